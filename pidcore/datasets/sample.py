"""The sample and dataset types every loader produces, and the two errors loaders raise."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from pidcore.atoms import option_letters


class DatasetError(ValueError):
    """A dataset cannot be used at all: unknown kind, missing or unreadable file, or no usable row."""


class SkipRow(Exception):
    """One row is unusable; the message is the reason recorded in `LoadedDataset.skipped`."""


@dataclass
class Sample:
    """One multiple-choice item: an RGB image, a question, lettered options and the optional gold letter.

    split: the store's split of the sample when its dataset names one ("fit" for the paper layout's train.json,
      "evaluation" for its val.json), else None.
    prompt: the source's own prompt string, verbatim, when it has one (the paper's JSON: the human turn with
      "\\n<image>" removed, as the paper's scripts give it to the model), else None.
    on_white: for a base64 RGBA image of the paper's JSON, the image composited on white as the paper's Qwen scripts
      see it (qwen_vl_utils), beside `image`, its RGB form with the alpha dropped; else None.
    """

    id: str
    image: Image.Image
    question: str
    options: list[str]
    answer: str | None
    hint: str | None
    split: str | None = None
    prompt: str | None = None
    on_white: Image.Image | None = None

    @property
    def letters(self) -> list[str]:
        """The option letters, A, B, ... in order, one per option."""
        return option_letters(len(self.options))


@dataclass
class LoadedDataset:
    """The usable samples of a dataset file and the (row id, reason) of every row that was skipped."""

    name: str
    samples: list[Sample] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
