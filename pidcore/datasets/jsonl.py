"""Generic JSON Lines: one object per line with image path, question, options and optional answer, id and hint."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from pidcore.datasets.images import image_from_file
from pidcore.datasets.readers import json_rows
from pidcore.datasets.rows import Row, build_sample
from pidcore.datasets.sample import Sample


def iter_rows(path: Path, root: Path) -> Iterator[Row]:
    """Rows of a generic JSONL file, ids from `id` or the line number, images resolved against `root`."""
    return json_rows(path, "id", partial(_build, root=root))


def _build(row_id: str, record: dict[str, Any], root: Path) -> Sample:
    """Validate one record (answer as a letter or an option's text) and decode its image."""
    return build_sample(row_id, question=record.get("question"), options=record.get("options"),
                        answer=record.get("answer"), hint=record.get("hint"), image=record.get("image"),
                        decode=partial(image_from_file, root))
