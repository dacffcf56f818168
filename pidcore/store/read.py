"""Read access to the results database: short read-only connections that retry while a writer holds the lock."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TypeVar

import duckdb
import numpy as np
import pandas as pd

from pidcore.atoms import ATOMS, BOUND_COLUMNS, Atoms
from pidcore.store.blobs import blob_to_array
from pidcore.store.schema import (ATOM_COLUMNS, ATOMS_VIEW, LAYER_SQL, RUNS, TABLES, TASK_PID, LayerResult,
                                  SampleRow)

T = TypeVar("T")
_DIAGNOSTIC_KEYS = ["run_id", "model", "task", "checkpoint", "layer", "estimator", "n_samples"]
_DIAGNOSTIC_DETAILS = ["mode", "sinkhorn_residual", "sinkhorn_converged", "stopped_because", "best_epoch",
                       "initial_bits", "kept_bits", "floor_bits"]
DIAGNOSTIC_COLUMNS = [*_DIAGNOSTIC_KEYS, "marginal_gap", *_DIAGNOSTIC_DETAILS]


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


def query(path: str | Path, sql: str, parameters: list | None = None) -> list[tuple]:
    """One parameterised query on a short read-only connection, as a list of rows."""
    return _on_short_connection(path, lambda connection: connection.execute(sql, parameters or []).fetchall())


def query_frame(path: str | Path, sql: str, parameters: list | None = None) -> pd.DataFrame:
    """One parameterised query on a short read-only connection, as a DataFrame."""
    return _on_short_connection(path, lambda connection: connection.execute(sql, parameters or []).df())


def _on_short_connection(path: str | Path, work: Callable[[duckdb.DuckDBPyConnection], T],
                         attempts: int = 20) -> T:
    """Open read-only, do `work`, close; a missing table is a StoreError."""
    connection = connect_read_only(path, attempts)
    try:
        return work(connection)
    except duckdb.CatalogException as error:
        raise StoreError(f"{path} lacks a table this needs: {error}") from error
    finally:
        connection.close()


def present_columns(connection: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """The tables and views an open database holds, with their columns."""
    present: dict[str, set[str]] = {}
    rows = connection.execute("SELECT table_name, column_name FROM information_schema.columns").fetchall()
    for table, column in rows:
        present.setdefault(table, set()).add(column)
    return present


def _objects(path: str | Path) -> dict[str, set[str]]:
    return _on_short_connection(path, present_columns)


def read_atoms(path: str | Path) -> pd.DataFrame:
    """All rows of the public `atoms` view; columns added since a database was written (the bounds) are NaN."""
    view = _objects(path).get(ATOMS_VIEW)
    if view is None:
        raise StoreError(f"{path} has no `atoms` view; is it a results database?")
    frame = query_frame(path, f"SELECT {', '.join(c for c in ATOM_COLUMNS if c in view)} FROM {ATOMS_VIEW}")
    return frame.reindex(columns=ATOM_COLUMNS)


def read_runs(path: str | Path) -> pd.DataFrame:
    """Every run: its id, names, checkpoint and depth (settings left out)."""
    columns = [name for name in RUNS.column_names if name not in ("settings", "created")]
    return query_frame(path, f"SELECT {', '.join(columns)} FROM runs ORDER BY created, run_id")


def read_diagnostics(path: str | Path) -> pd.DataFrame:
    """Per run and layer: the estimator's diagnostics, flattened to DIAGNOSTIC_COLUMNS."""
    keys = ", ".join(LAYER_SQL if key == "layer" else key for key in _DIAGNOSTIC_KEYS)
    frame = query_frame(path, f"SELECT {keys}, diagnostics FROM layer_atoms JOIN runs "
                              "USING (run_id)")
    details = pd.DataFrame([json.loads(text) for text in frame.pop("diagnostics")], index=frame.index,
                           columns=["marginal_gap_x1", "marginal_gap_x2", *_DIAGNOSTIC_DETAILS])
    frame["marginal_gap"] = details[["marginal_gap_x1", "marginal_gap_x2"]].abs().max(axis=1)
    for column in _DIAGNOSTIC_DETAILS:
        frame[column] = details[column]
    return frame[DIAGNOSTIC_COLUMNS]


def read_letter_mass(path: str | Path, run_ids: list[str]) -> dict[str, float]:
    """Per run: the mean probability mass its full pass puts on the option letters at the output layer, over its
    stored samples (NaN where a run has no samples, or an imported run has no mass)."""
    masses: dict[str, list[float]] = {run_id: [] for run_id in run_ids}
    for run_id, blob in query(path, "SELECT run_id, letter_mass FROM samples WHERE list_contains(?, run_id)",
                              [list(run_ids)]):
        masses[run_id].append(float(blob_to_array(blob).reshape(3, -1)[0, -1]))
    return {run_id: float(np.nanmean(values)) if not np.isnan(values).all() else float("nan")
            for run_id, values in masses.items()}


def read_pointwise(path: str | Path, model: str, task: str, checkpoint: str, estimator: str) -> pd.DataFrame:
    """Per-sample (local) atoms of one run at every stored layer; empty where they were not kept."""
    atoms = ", ".join(f"p.{atom}" for atom in ATOMS)
    return query_frame(path, f"SELECT p.layer, p.sample_id, {atoms} FROM pointwise_atoms p JOIN runs r "
                             "USING (run_id) WHERE r.model = ? AND r.task = ? AND r.checkpoint = ? AND p.estimator = ?",
                       [model, task, checkpoint, estimator])


def read_task_pid(path: str | Path) -> pd.DataFrame:
    """The exact generator PID of the synthetic tasks (empty for databases without them)."""
    if TASK_PID.name not in _objects(path):
        return pd.DataFrame(columns=TASK_PID.column_names)
    return query_frame(path, f"SELECT {', '.join(TASK_PID.column_names)} FROM {TASK_PID.name} ORDER BY task")


def reference_runs(path: str | Path, model: str, n_options: int, estimator: str) -> pd.DataFrame:
    """Runs of `model` with `n_options` options that kept this estimator's fitted networks: run_id, task,
    checkpoint, step."""
    return query_frame(path, "SELECT DISTINCT r.run_id, r.task, r.checkpoint, r.step FROM runs r "
                             "JOIN layer_atoms l USING (run_id) JOIN samples s USING (run_id) "
                             "WHERE r.model = ? AND s.n_options = ? AND l.estimator = ? AND l.fitted IS NOT NULL "
                             "ORDER BY r.task", [model, n_options, estimator])


def fitted_estimators(path: str | Path, run_id: str, estimator: str) -> list[tuple[int, bytes]]:
    """(layer, fitted estimator bytes) of every layer of a run where this estimator's networks were kept."""
    return query(path, "SELECT layer, fitted FROM layer_atoms WHERE run_id = ? AND estimator = ? "
                       "AND fitted IS NOT NULL ORDER BY layer", [run_id, estimator])


def load_calibration(path: str | Path, run_id: str) -> np.ndarray | None:
    """A run's stored embedding statistics [4, d] (image mean, image std, text mean, text std), or None."""
    if not Path(path).is_file():
        return None
    rows = query(path, "SELECT stats FROM calibration WHERE run_id = ?", [run_id])
    return blob_to_array(rows[0][0]) if rows else None


def stored_sample_ids(path: str | Path, run_id: str) -> set[str]:
    """Ids of the samples of a run already stored."""
    if not Path(path).is_file():
        return set()
    return {row[0] for row in query(path, "SELECT sample_id FROM samples WHERE run_id = ?", [run_id])}


def load_samples(path: str | Path, run_id: str) -> list[SampleRow]:
    """A run's stored samples in dataset order, arrays decoded."""
    columns = [field.name for field in fields(SampleRow)]
    rows = query(path, f"SELECT {', '.join(columns)} FROM samples WHERE run_id = ? ORDER BY position", [run_id])
    return [SampleRow(run, sample, position, gold, *(blob_to_array(blob) for blob in blobs), split)
            for run, sample, position, gold, *blobs, split in rows]


def run_depth(path: str | Path, run_id: str) -> int:
    """The decoder depth (n_layers) a run was registered with."""
    rows = query(path, "SELECT n_layers FROM runs WHERE run_id = ?", [run_id])
    if not rows:
        raise StoreError(f"no run {run_id} in {path}")
    return int(rows[0][0])


def stored_layers(path: str | Path, run_id: str, estimator: str) -> set[int]:
    """Layers of a run whose atoms are stored for an estimator."""
    return {row[0] for row in query(path, "SELECT layer FROM layer_atoms WHERE run_id = ? AND estimator = ?",
                                    [run_id, estimator])}


def read_layer_results(path: str | Path, run_id: str, estimator: str, layers: list[int]) -> list[LayerResult]:
    """The stored atoms and accuracy of some layers of a run, in layer order."""
    rows = query(path, f"SELECT layer, {', '.join(ATOMS + BOUND_COLUMNS)}, accuracy, diagnostics FROM layer_atoms "
                       "WHERE run_id = ? AND estimator = ? AND list_contains(?, layer) ORDER BY layer",
                 [run_id, estimator, layers])
    return [LayerResult(layer, Atoms(*values[:4], bounds=dict(zip(ATOMS, zip(values[4::2], values[5::2])))), accuracy,
                        json.loads(diagnostics)) for layer, *values, accuracy, diagnostics in rows]


def table_sizes(path: str | Path, attempts: int = 20) -> dict[str, int]:
    """Row counts of the results tables present (one try with attempts=1, for polling while a writer runs)."""

    def count(connection: duckdb.DuckDBPyConnection) -> dict[str, int]:
        names = sorted(set(present_columns(connection)) & {table.name for table in TABLES})
        return {name: connection.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in names}

    return _on_short_connection(path, count, attempts)
