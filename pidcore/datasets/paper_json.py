"""The paper pipeline's JSON: LLaVA-style conversation records whose prompt lists lettered options. The paper's
scripts read one such file per split (`PREFIX + "train.json"`, `PREFIX + "val.json"`); the registry resolves that
layout and reads each file here."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from pidcore.atoms import LETTERS
from pidcore.datasets.images import image_from_reference, paper_rgb
from pidcore.datasets.readers import record_rows
from pidcore.datasets.rows import Row, build_sample, clean_text
from pidcore.datasets.sample import DatasetError, Sample, SkipRow

LIST_KEYS = ("data", "samples", "records", "annotations")
_OPTION_LINE = re.compile(r"([A-Z])\s*[.):]\s*(.*)")
_HUMAN = ("human", "user")
_ASSISTANT = ("gpt", "assistant")


def iter_rows(path: Path, root: Path, prefix: str = "") -> Iterator[Row]:
    """Rows of the paper's JSON, ids from `id` or else `prefix` and the 0-based list position, images as paths or
    base64 (read as the paper's scripts read them: `images.image_from_reference(..., paper=True)`)."""
    return record_rows(enumerate(_records(path)), "id", partial(_build, root=root), prefix)


def _records(path: Path) -> list[Any]:
    """The file's list of records, stored either as the top level or under one of LIST_KEYS."""
    try:
        data = json.loads(path.read_bytes())
    except ValueError as error:
        raise DatasetError(f"{path.name} is not valid JSON: {error}") from error
    except RecursionError as error:
        raise DatasetError(f"{path.name} is nested too deeply to parse as JSON") from error
    if isinstance(data, dict):
        data = next((data[key] for key in LIST_KEYS if isinstance(data.get(key), list)), None)
    if not isinstance(data, list):
        raise DatasetError(f"{path.name} holds no list of records (a list, or a dict with one under {LIST_KEYS})")
    return data


def _build(row_id: str, record: dict[str, Any], root: Path) -> Sample:
    """Parse one record's prompt into question and options, take the gold from the reply, decode the image; the
    sample's `prompt` is the human text as the paper's scripts pass it, `value.replace("\\n<image>", "")`, verbatim,
    and a base64 RGBA image is kept composited on white (`on_white`) beside its RGB form (alpha dropped)."""
    prompt, reply, raw = _turns(record.get("conversations"))
    question, options = _parse_prompt(prompt, record.get("num_options"))
    sample = build_sample(row_id, question=question, options=options, answer=reply, hint=None,
                          image=record.get("image"), decode=partial(image_from_reference, root, paper=True))
    sample.prompt = raw.replace("\n<image>", "")
    if sample.image.mode == "RGBA":
        sample.on_white, sample.image = paper_rgb(sample.image), sample.image.convert("RGB")
    return sample


def _turns(conversations: Any) -> tuple[str, str | None, str]:
    """The first human prompt (cleaned), the first assistant reply, and that prompt as given (text only)."""
    if not isinstance(conversations, list):
        raise SkipRow("missing conversations")
    turns = [turn for turn in conversations if isinstance(turn, dict)]
    prompt = next((turn.get("value") for turn in turns if turn.get("from") in _HUMAN), None)
    reply = next((turn.get("value") for turn in turns if turn.get("from") in _ASSISTANT), None)
    text = clean_text(prompt, "prompt")
    if text is None:
        raise SkipRow("missing question")
    if not isinstance(prompt, str):
        raise SkipRow("prompt is not text")
    return text, clean_text(reply, "reply"), prompt


def _parse_prompt(prompt: str, num_options: Any) -> tuple[str, list[str]]:
    """Split a prompt into the question (text before option A, no <image> tag) and the consecutive option lines."""
    expected = _option_count(num_options)
    question: list[str] = []
    options: list[str] = []
    capacity = min(expected or len(LETTERS), len(LETTERS))
    for line in prompt.replace("<image>", "").splitlines():
        match = _OPTION_LINE.fullmatch(line.strip())
        if match and len(options) < capacity and match[1] == LETTERS[len(options)]:
            options.append(match[2])
        elif options:
            break
        else:
            question.append(line)
    if expected is not None and len(options) != expected:
        raise SkipRow(f"expected {expected} options, found {len(options)}")
    return "\n".join(question).strip(), options


def _option_count(value: Any) -> int | None:
    """The record's num_options as an int, None when absent."""
    text = clean_text(value, "num_options")
    if text is None:
        return None
    if not text.isdigit():
        raise SkipRow(f"num_options is not a number: {text!r}")
    return int(text)
