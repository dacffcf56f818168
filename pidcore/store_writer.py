"""The writer side of the results database: schema, resumable per-unit writes, and the public `atoms` view.

The writer opens the file, writes one unit (a chunk of samples, or one layer's atoms) in a
transaction, and closes it again, so readers (the dashboard) can open it between units. Every
insert is keyed, so a run killed at any point and started again neither duplicates nor loses rows.
"""

from __future__ import annotations

import io
import json
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from pidcore.store import connect_read_only

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY, model VARCHAR, family VARCHAR, task VARCHAR, checkpoint VARCHAR,
        step BIGINT, stage VARCHAR, n_layers INTEGER, settings VARCHAR, created DOUBLE)""",
    """CREATE TABLE IF NOT EXISTS calibration (run_id VARCHAR PRIMARY KEY, stats BLOB)""",
    """CREATE TABLE IF NOT EXISTS samples (
        run_id VARCHAR, sample_id VARCHAR, position INTEGER, gold INTEGER, n_options INTEGER,
        x1 BLOB, x2 BLOB, probs BLOB, letter_mass BLOB, PRIMARY KEY (run_id, sample_id))""",
    """CREATE TABLE IF NOT EXISTS layer_atoms (
        run_id VARCHAR, layer INTEGER, estimator VARCHAR, r DOUBLE, u1 DOUBLE, u2 DOUBLE, s DOUBLE,
        n_samples INTEGER, accuracy DOUBLE, diagnostics VARCHAR, fitted BLOB,
        PRIMARY KEY (run_id, layer, estimator))""",
    """CREATE TABLE IF NOT EXISTS pointwise_atoms (
        run_id VARCHAR, layer INTEGER, estimator VARCHAR, sample_id VARCHAR,
        r DOUBLE, u1 DOUBLE, u2 DOUBLE, s DOUBLE, PRIMARY KEY (run_id, layer, estimator, sample_id))""",
    """CREATE TABLE IF NOT EXISTS task_pid (
        task VARCHAR PRIMARY KEY, r DOUBLE, u1 DOUBLE, u2 DOUBLE, s DOUBLE, planted VARCHAR)""",
    """CREATE OR REPLACE VIEW atoms AS
        SELECT runs.model, runs.family, runs.task, runs.checkpoint, runs.step, runs.stage, layer_atoms.layer,
               runs.n_layers, layer_atoms.estimator, layer_atoms.r, layer_atoms.u1, layer_atoms.u2, layer_atoms.s,
               layer_atoms.n_samples, layer_atoms.accuracy
        FROM layer_atoms JOIN runs USING (run_id)""",
]


TABLES = ("runs", "calibration", "samples", "layer_atoms", "pointwise_atoms", "task_pid", "atoms")


def insert_rows(connection: duckdb.DuckDBPyConnection, table: str, rows: list[list], replace: bool = False) -> None:
    """Insert many rows at once through an Arrow table (values never enter the SQL text); keyed rows kept or replaced.

    DuckDB's executemany runs one statement per row; this is one statement for all of them.
    """
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}")
    if not rows:
        return
    incoming = pa.table({f"c{i}": pa.array(column) for i, column in enumerate(zip(*rows))})
    connection.register("incoming_rows", incoming)
    try:
        connection.execute(f"INSERT OR {'REPLACE' if replace else 'IGNORE'} INTO {table} SELECT * FROM incoming_rows")
    finally:
        connection.unregister("incoming_rows")


def array_to_blob(array: np.ndarray) -> bytes:
    """A numpy array as .npy bytes (no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


@contextmanager
def write_unit(path: str | Path, attempts: int = 40, wait_s: float = 0.25):
    """A short read-write connection in one transaction; waits while a reader holds the file."""
    connection = _connect(Path(path), attempts, wait_s)
    try:
        present = {row[0] for row in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if not present.issuperset(TABLES):
            for statement in SCHEMA:
                connection.execute(statement)
        connection.execute("BEGIN TRANSACTION")
        yield connection
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    finally:
        connection.close()


def ensure_schema(path: str | Path) -> None:
    """Create the database and its tables if they do not exist yet."""
    with write_unit(path):
        pass


def read_unit(path: str | Path, sql: str, parameters: list | None = None) -> list[tuple]:
    """Run one parameterised query on a short read-only connection (an empty list if there is no file yet)."""
    if not Path(path).is_file():
        return []
    connection = connect_read_only(path)
    try:
        return connection.execute(sql, parameters or []).fetchall()
    finally:
        connection.close()


def _connect(path: Path, attempts: int, wait_s: float) -> duckdb.DuckDBPyConnection:
    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(attempts):
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException:
            if attempt == attempts - 1:
                raise
            time.sleep(wait_s)
    raise AssertionError("unreachable")


def settings_json(settings: dict) -> str:
    """Canonical JSON of a run's settings (sorted keys), the basis of its id."""
    return json.dumps(settings, sort_keys=True, default=str)
