"""Read access to the results database (DuckDB). Readers open read-only and retry while a writer holds the lock."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

DEFAULT_DB = Path(__file__).resolve().parent.parent / "data" / "results.duckdb"
ATOM_COLUMNS = ["model", "family", "task", "checkpoint", "step", "stage", "layer", "n_layers", "estimator",
                "r", "u1", "u2", "s", "n_samples", "accuracy"]


def blob_to_array(blob: bytes) -> np.ndarray:
    """A numpy array stored as .npy bytes (the inverse of store_writer.array_to_blob; no pickle)."""
    return np.load(io.BytesIO(blob), allow_pickle=False)


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


def _query(path: str | Path, sql: str, parameters: list | None = None) -> pd.DataFrame:
    """One parameterised query on a short read-only connection, as a DataFrame."""
    connection = connect_read_only(path)
    try:
        return connection.execute(sql, parameters or []).df()
    except duckdb.CatalogException as error:
        raise StoreError(f"{path} lacks a table this page needs: {error}") from error
    finally:
        connection.close()


def read_diagnostics(path: str | Path) -> pd.DataFrame:
    """Per run and layer: the estimator's diagnostics, flattened, and the run's mean letter mass (where stored)."""
    frame = _query(path, "SELECT r.run_id, r.model, r.task, r.checkpoint, l.layer, l.estimator, l.n_samples, "
                         "l.diagnostics FROM layer_atoms l JOIN runs r USING (run_id)")
    details = pd.DataFrame([json.loads(text) for text in frame.pop("diagnostics")], index=frame.index)
    frame["mode"] = details.get("mode")
    frame["marginal_gap"] = details[["marginal_gap_x1", "marginal_gap_x2"]].abs().max(axis=1)
    frame["sinkhorn_residual"] = details.get("sinkhorn_residual")
    frame["sinkhorn_converged"] = details.get("sinkhorn_converged")
    frame["stopped_because"] = details.get("stopped_because")
    masses = _letter_mass(path)
    frame["letter_mass"] = frame["run_id"].map(masses)
    return frame


def _letter_mass(path: str | Path) -> dict[str, float]:
    """Mean probability mass the full pass puts on the option letters, per run with stored samples."""
    rows = _query(path, "SELECT run_id, letter_mass FROM samples")
    masses: dict[str, list[float]] = {}
    for run_id, blob in rows.itertuples(index=False):
        masses.setdefault(run_id, []).append(float(blob_to_array(blob)[0]))
    return {run_id: float(np.nanmean(values)) if not np.isnan(values).all() else float("nan")
            for run_id, values in masses.items()}


def read_pointwise(path: str | Path, model: str, task: str, checkpoint: str, estimator: str) -> pd.DataFrame:
    """Per-sample (local) atoms of one run at every stored layer; empty where they were not kept."""
    return _query(path, "SELECT p.layer, p.sample_id, p.r, p.u1, p.u2, p.s FROM pointwise_atoms p JOIN runs r "
                        "USING (run_id) WHERE r.model = ? AND r.task = ? AND r.checkpoint = ? AND p.estimator = ?",
                  [model, task, checkpoint, estimator])


def read_task_pid(path: str | Path) -> pd.DataFrame:
    """The exact generator PID of the synthetic tasks (empty for databases without them)."""
    connection = connect_read_only(path)
    try:
        tables = {row[0] for row in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "task_pid" not in tables:
            return pd.DataFrame(columns=["task", "r", "u1", "u2", "s", "planted"])
        return connection.execute("SELECT task, r, u1, u2, s, planted FROM task_pid ORDER BY task").df()
    finally:
        connection.close()
