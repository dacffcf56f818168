"""POPE: JSON Lines of yes/no object-presence questions; option A is "yes" and option B is "no"."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from pidcore.datasets.images import image_from_file
from pidcore.datasets.readers import json_rows
from pidcore.datasets.rows import Row, build_sample, clean_text
from pidcore.datasets.sample import Sample, SkipRow

OPTIONS = ["yes", "no"]
_LABEL_LETTERS = {"yes": "A", "no": "B"}


def iter_rows(path: Path, root: Path) -> Iterator[Row]:
    """Rows of a POPE file, ids from `question_id`, images resolved against `root`."""
    return json_rows(path, "question_id", partial(_build, root=root))


def _build(row_id: str, record: dict[str, Any], root: Path) -> Sample:
    """Validate one POPE record, map its yes/no label to a letter and decode its image."""
    return build_sample(row_id, question=record.get("text"), options=OPTIONS, answer=_label_letter(record.get("label")),
                        hint=None, image=record.get("image"), decode=partial(image_from_file, root))


def _label_letter(label: Any) -> str | None:
    """The gold letter of a yes/no label (any case), None without a label, a skip for anything else."""
    text = clean_text(label, "label")
    if text is None:
        return None
    if text.casefold() not in _LABEL_LETTERS:
        raise SkipRow(f"label is not yes or no: {text!r}")
    return _LABEL_LETTERS[text.casefold()]
