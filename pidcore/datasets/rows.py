"""Row validation shared by all formats: text cleaning, option lists, gold letters and sample assembly."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

from pidcore.atoms import LETTERS, MIN_OPTIONS
from pidcore.datasets.sample import Sample, SkipRow

Row = tuple[str, Callable[[], Sample]]
_LEADING_LETTER = re.compile(r"\(?([A-Z])(?:[.:)]|\s|$)")


def clean_text(value: Any, field: str) -> str | None:
    """Strip a raw cell or JSON value to text, mapping None, NaN and blanks to None so emptiness is uniform."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (dict, list)):
        raise SkipRow(f"{field} is not text")
    return str(value).strip() or None


def normalise_options(raw: Any) -> list[str]:
    """Drop trailing empty options and check the rest, so each option keeps the letter its source gave it."""
    if raw is None:
        raise SkipRow("missing options")
    if not isinstance(raw, (list, tuple)):
        raise SkipRow("options is not a list")
    options = [clean_text(value, "option") for value in raw]
    while options and options[-1] is None:
        options.pop()
    if len(options) > len(LETTERS):
        raise SkipRow(f"more than {len(LETTERS)} options")
    if None in options:
        raise SkipRow(f"empty option before a later option: {LETTERS[options.index(None)]}")
    if len(options) < MIN_OPTIONS:
        raise SkipRow(f"fewer than {MIN_OPTIONS} non-empty options")
    return [option for option in options if option is not None]


def resolve_answer(raw: Any, options: Sequence[str]) -> str | None:
    """Turn a gold answer given as a letter, an option's text or a lettered reply ("B. cat") into its letter."""
    text = clean_text(raw, "answer")
    if text is None:
        return None
    letter = text if len(text) == 1 and text in LETTERS else _letter_of_text(text, options)
    if letter is None or letter not in LETTERS[: len(options)]:
        raise SkipRow(f"gold answer not among the options: {text!r}")
    return letter


def _letter_of_text(text: str, options: Sequence[str]) -> str | None:
    """The letter of the option whose text equals `text` (ignoring case), else the letter a reply starts with."""
    for letter, option in zip(LETTERS, options):
        if option.casefold() == text.casefold():
            return letter
    leading = _LEADING_LETTER.match(text)
    return leading[1] if leading else None


def build_sample(row_id: str, *, question: Any, options: Any, answer: Any, hint: Any, image: Any,
                 decode: Callable[[str], Image.Image]) -> Sample:
    """Validate a row's texts before decoding its image, so cheap checks reject bad rows without any decoding."""
    question_text = clean_text(question, "question")
    if question_text is None:
        raise SkipRow("missing question")
    choices = normalise_options(options)
    gold = resolve_answer(answer, choices)
    hint_text = clean_text(hint, "hint")
    reference = clean_text(image, "image")
    if reference is None:
        raise SkipRow("missing image")
    return Sample(id=row_id, image=decode(reference), question=question_text, options=choices, answer=gold,
                  hint=hint_text)


def reject(reason: str) -> Callable[[], Sample]:
    """A row builder that always fails with the reason, for rows unusable before any field is read (bad JSON)."""

    def build() -> Sample:
        """Raise the stored reason."""
        raise SkipRow(reason)

    return build
