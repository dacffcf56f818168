"""Read access to the results database (DuckDB). Readers open read-only and retry while a writer holds the lock."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pandas as pd

DEFAULT_DB = Path(__file__).resolve().parent.parent / "data" / "results.duckdb"
ATOM_COLUMNS = ["model", "family", "task", "checkpoint", "step", "stage", "layer", "n_layers", "estimator",
                "r", "u1", "u2", "s", "n_samples", "accuracy"]


class StoreError(RuntimeError):
    """The results database is missing, locked for too long, or not a results database."""


def connect_read_only(path: str | Path, attempts: int = 20, wait_s: float = 0.25) -> duckdb.DuckDBPyConnection:
    """Open the database read-only, retrying while another process holds its write lock."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"no results database at {path}")
    for attempt in range(attempts):
        try:
            return duckdb.connect(str(path), read_only=True)
        except duckdb.IOException as error:
            if attempt == attempts - 1:
                raise StoreError(f"could not open {path} read-only: {error}") from error
            time.sleep(wait_s)
    raise AssertionError("unreachable")


def read_atoms(path: str | Path) -> pd.DataFrame:
    """All rows of the public `atoms` view, as a DataFrame."""
    connection = connect_read_only(path)
    try:
        tables = {row[0] for row in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "atoms" not in tables:
            raise StoreError(f"{path} has no `atoms` view; is it a results database?")
        return connection.execute(f"SELECT {', '.join(ATOM_COLUMNS)} FROM atoms").df()
    finally:
        connection.close()
