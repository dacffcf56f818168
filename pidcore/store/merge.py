"""Merging a sweep unit's shard (a results database one worker wrote) into the shared database.

Rows move in batches, each batch its own short keyed transaction, so the dashboard can open the database between
them and a merge cut short at any point and repeated adds nothing twice. The runs row goes last: the `atoms` view
joins on it, so a run shows on the pages only once all its rows are in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pidcore.store.read import connect_read_only
from pidcore.store.schema import CALIBRATION, HIDDEN_STATES, LAYER_ATOMS, POINTWISE_ATOMS, RUNS, SAMPLES, Table
from pidcore.store.write import ensure_schema, insert_rows, write_unit

MERGE_ORDER = (CALIBRATION, SAMPLES, HIDDEN_STATES, POINTWISE_ATOMS, LAYER_ATOMS, RUNS)
# Rows per transaction: a sample row carries its features and letter distributions (tens of kB for a 7B model).
_BATCH_ROWS = {SAMPLES.name: 256, HIDDEN_STATES.name: 256}
_DEFAULT_BATCH_ROWS = 20_000


def merge_shard(shard: str | Path, target: str | Path) -> int:
    """Add every row of `shard` that `target` lacks, table by table in MERGE_ORDER; returns the rows added."""
    ensure_schema(shard)
    source = connect_read_only(shard, time_limited=False)
    added = 0
    try:
        for table in MERGE_ORDER:
            cursor = source.execute(f"SELECT {', '.join(table.column_names)} FROM {table.name}")
            while batch := cursor.fetchmany(_BATCH_ROWS.get(table.name, _DEFAULT_BATCH_ROWS)):
                added += _merge_batch(target, table, batch)
    finally:
        source.close()
    return added


def _merge_batch(target: str | Path, table: Table, rows: Sequence[tuple]) -> int:
    """One batch of a table's rows in one short transaction; rows whose key is stored already are left as they are."""
    with write_unit(target) as connection:
        return insert_rows(connection, table, [dict(zip(table.column_names, row)) for row in rows])
