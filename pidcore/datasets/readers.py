"""File readers shared by the formats: text-only tables, JSON Lines and lists of JSON records."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from pidcore.datasets.rows import Row, reject
from pidcore.datasets.sample import DatasetError, Sample

RecordBuilder = Callable[[str, dict[str, Any]], Sample]


def read_table(path: Path, separator: str) -> pd.DataFrame:
    """Read a CSV/TSV with every cell as text and no NA guessing, so options such as "None" or "1" stay verbatim."""
    try:
        return pd.read_csv(path, sep=separator, dtype=str, na_filter=False)
    except ValueError as error:
        raise DatasetError(f"cannot read {path.name} as a table: {error}") from error


def require_columns(frame: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    """Fail on the whole file when a column every row needs is absent, rather than skipping every row."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DatasetError(f"{path.name} lacks column(s): {', '.join(missing)}")


def record_id(record: dict[str, Any], key: str, number: int, prefix: str = "") -> str:
    """The record's own id under `key`, or its position (after `prefix`) when it has none."""
    value = record.get(key)
    return f"{prefix}{number}" if value is None or value == "" else str(value)


def record_rows(records: Iterable[tuple[int, Any]], id_key: str, build: RecordBuilder,
                prefix: str = "") -> Iterator[Row]:
    """Pair each numbered record with its id and a deferred builder; non-objects become skipped rows. A record
    without an id is named by `prefix` and its number."""
    for number, record in records:
        if isinstance(record, dict):
            row_id = record_id(record, id_key, number, prefix)
            yield row_id, partial(build, row_id, record)
        else:
            yield f"{prefix}{number}", reject("not a JSON object")


def json_rows(path: Path, id_key: str, build: RecordBuilder) -> Iterator[Row]:
    """Rows of a JSON Lines file, ids defaulting to 1-based line numbers; an unparsable line is a skipped row."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                yield str(number), reject(f"invalid JSON: {error.msg}")
                continue
            except ValueError:
                yield str(number), reject("invalid JSON: not UTF-8 text")
                continue
            yield from record_rows([(number, record)], id_key, build)
