"""MMBench TSV: base64 images, lettered option columns A, B, ..., an optional hint and an optional gold letter."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from pidcore.atoms import LETTERS
from pidcore.datasets.images import image_from_base64
from pidcore.datasets.readers import read_table, record_id, require_columns
from pidcore.datasets.rows import Row, build_sample, clean_text
from pidcore.datasets.sample import Sample

_MAX_REFERENCE_LENGTH = 64


def iter_rows(path: Path, root: Path) -> Iterator[Row]:
    """Rows of an MMBench TSV, ids from `index`; `root` is unused because the images are inline."""
    frame = read_table(path, "\t")
    require_columns(frame, ["question", "image"], path)
    letters = [letter for letter in LETTERS if letter in frame.columns]
    records = frame.to_dict("records")
    shared = {str(record.get("index")): record["image"] for record in records
              if len(str(record["image"])) > _MAX_REFERENCE_LENGTH}
    for number, record in enumerate(records):
        row_id = record_id(record, "index", number)
        yield row_id, partial(_build, row_id, record, letters, shared)


def _build(row_id: str, record: dict[str, Any], letters: list[str], shared: dict[str, str]) -> Sample:
    """Validate one MMBench row and decode its image, following a short image cell to the row it names."""
    image = clean_text(record["image"], "image")
    if image is not None and len(image) <= _MAX_REFERENCE_LENGTH:
        image = shared.get(image, image)
    return build_sample(row_id, question=record["question"], options=[record[letter] for letter in letters],
                        answer=record.get("answer"), hint=record.get("hint"), image=image,
                        decode=image_from_base64)
