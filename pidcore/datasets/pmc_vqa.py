"""PMC-VQA CSV: figure paths, a question, "Choice A".. columns with " A:" prefixes, and the gold label or text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from pidcore.atoms import LETTERS
from pidcore.datasets.images import image_from_file
from pidcore.datasets.readers import read_table, require_columns
from pidcore.datasets.rows import Row, build_sample, clean_text
from pidcore.datasets.sample import Sample


def iter_rows(path: Path, root: Path) -> Iterator[Row]:
    """Rows of a PMC-VQA CSV, ids are 0-based data-row numbers, figures resolved against `root`."""
    frame = read_table(path, ",")
    require_columns(frame, ["Figure_path", "Question"], path)
    letters = [letter for letter in LETTERS if f"Choice {letter}" in frame.columns]
    for number, record in enumerate(frame.to_dict("records")):
        yield str(number), partial(_build, str(number), record, letters, root)


def _build(row_id: str, record: dict[str, Any], letters: list[str], root: Path) -> Sample:
    """Validate one PMC-VQA row; the gold is Answer_label when present, else the Answer text matched to a choice."""
    options = [_strip_prefix(record[f"Choice {letter}"], letter) for letter in letters]
    label = clean_text(record.get("Answer_label"), "Answer_label")
    answer = label if label is not None else _strip_prefix(record.get("Answer"), "[A-Z]")
    return build_sample(row_id, question=record["Question"], options=options, answer=answer, hint=None,
                        image=record["Figure_path"], decode=partial(image_from_file, root))


def _strip_prefix(value: Any, letter: str) -> str | None:
    """Remove a leading letter-colon prefix such as " A:" or "A: " that PMC-VQA puts before choice texts."""
    text = clean_text(value, "choice")
    if text is None:
        return None
    return re.sub(rf"^{letter}\s*:\s*", "", text).strip() or None
