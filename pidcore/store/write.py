"""The writer side of the results database: short keyed write units.

The writer opens the file, writes one unit (a run's registration, a chunk of samples, one layer's atoms) in a
transaction and closes it again, so readers (the dashboard) can open it between units. Every insert is keyed,
so a run killed at any point and started again neither duplicates nor loses rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from pidcore.atoms import ATOMS, BOUND_COLUMNS, Atoms
from pidcore.store.blobs import array_to_blob
from pidcore.store.read import StoreError, is_locked, present_columns, present_select, query
from pidcore.store.schema import (
    CALIBRATION,
    HIDDEN_STATES,
    LAYER_ATOMS,
    POINTWISE_ATOMS,
    RUNS,
    SAMPLES,
    TABLES,
    TASK_PID,
    UNKNOWN_DEPTH_LAYER,
    SampleRow,
    SampleText,
    Table,
    schema_changes,
)


_RUN_TABLES = tuple(table for table in TABLES if "run_id" in table.column_names)


@contextmanager
def write_unit(path: str | Path, attempts: int = 40, wait_s: float = 0.25) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short read-write connection in one transaction, the schema created if missing; waits while a reader holds
    the file. The unit ends with an explicit CHECKPOINT, so a full disk fails the unit instead of the silent
    checkpoint at close; any failure re-raises the original error, not the failed rollback's."""
    connection = _connect(Path(path), attempts, wait_s)
    try:
        for statement in schema_changes(present_columns(connection)):
            connection.execute(statement)
        connection.execute("BEGIN TRANSACTION")
        yield connection
        connection.execute("COMMIT")
        connection.execute("CHECKPOINT")
    except BaseException:
        _abandon(connection)
        raise
    connection.close()


def _abandon(connection: duckdb.DuckDBPyConnection) -> None:
    """Roll back and close after a failure, ignoring their own errors (a failed COMMIT or CHECKPOINT leaves no
    transaction to roll back), so the caller sees the error that caused the failure."""
    with suppress(duckdb.Error):
        connection.execute("ROLLBACK")
    with suppress(duckdb.Error):
        connection.close()


def _connect(path: Path, attempts: int, wait_s: float) -> duckdb.DuckDBPyConnection:
    """Open for writing, waiting while another process holds the lock; any other failure (a folder, a file that
    is not a DuckDB database, no permission) is a StoreError with DuckDB's own words at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(attempts):
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as error:
            if not is_locked(error):
                raise StoreError(f"cannot open {path} for writing: {error}") from error
            if attempt == attempts - 1:
                raise StoreError(f"{path} stayed locked by another process: {error}") from error
            time.sleep(wait_s)
    raise AssertionError("unreachable")


def ensure_schema(path: str | Path) -> None:
    """Create the database and its tables if they do not exist yet."""
    with write_unit(path):
        pass


def insert_rows(connection: duckdb.DuckDBPyConnection, table: Table, rows: Sequence[Mapping],
                replace: bool = False) -> int:
    """Insert rows given as {column: value} in one statement through an Arrow table (values never enter the SQL
    text); rows whose key is already stored are kept as they are, or replaced. Returns the rows written."""
    if not rows:
        return 0
    names = table.column_names
    incoming = pa.table({name: pa.array([row[name] for row in rows]) for name in names})
    connection.register("incoming_rows", incoming)
    try:
        return connection.execute(f"INSERT OR {'REPLACE' if replace else 'IGNORE'} INTO {table.name} "
                                  f"({', '.join(names)}) SELECT {', '.join(names)} FROM incoming_rows").fetchone()[0]
    finally:
        connection.unregister("incoming_rows")


class RunConflict(ValueError):
    """A run is stored already with another depth; `stored_depth` is its depth, which its layer rows are numbered by."""

    def __init__(self, message: str, stored_depth: int) -> None:
        super().__init__(message)
        self.stored_depth = stored_depth


def register_run(path: str | Path, *, run_id: str, model: str, family: str, task: str, checkpoint: str,
                 step: int | None, stage: str | None, n_layers: int, settings: Mapping) -> list[str]:
    """Insert a run's row once: its names, checkpoint, depth and full settings. A run stored already keeps its row
    but takes these model and family names, and what changed is returned ("model 'a' -> 'b'") for the caller to
    say; another depth is refused (RunConflict), since the stored layer rows are numbered by the stored one."""
    row = {"run_id": run_id, "model": model, "family": family, "task": task, "checkpoint": checkpoint, "step": step,
           "stage": stage, "n_layers": n_layers, "settings": json.dumps(settings, sort_keys=True, default=str),
           "created": time.time()}
    with write_unit(path) as connection:
        stored = connection.execute("SELECT n_layers FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if stored is None:
            insert_rows(connection, RUNS, [row])
            return []
        if stored[0] is not None and stored[0] != n_layers:
            raise RunConflict(f"run {run_id} ({model} on {task}, checkpoint {checkpoint}) is stored with depth "
                              f"{stored[0]}, not {n_layers}: its layer rows are numbered by that depth", stored[0])
        return _renamed(connection, run_id, model, family)


def rename_run(path: str | Path, run_id: str, *, model: str, family: str) -> list[str]:
    """Give a stored run these model and family names (a rerun resuming it under others said so); what changed, as
    register_run returns it; nothing for a run not stored."""
    with write_unit(path) as connection:
        return _renamed(connection, run_id, model, family)


def _renamed(connection: duckdb.DuckDBPyConnection, run_id: str, model: str, family: str) -> list[str]:
    """Update a stored run's model and family names where they differ; the changes as "FIELD 'old' -> 'new'"."""
    stored = connection.execute("SELECT model, family FROM runs WHERE run_id = ?", [run_id]).fetchone()
    if stored is None:
        return []
    changes = [f"{field} {old!r} -> {new!r}" for field, old, new in zip(("model", "family"), stored, (model, family))
               if old != new]
    if changes:
        connection.execute("UPDATE runs SET model = ?, family = ? WHERE run_id = ?", [model, family, run_id])
    return changes


def delete_runs(path: str | Path, run_ids: Sequence[str]) -> None:
    """Remove every row of these runs from every table in one transaction, to undo a run that failed part-way."""
    if not run_ids:
        return
    with write_unit(path) as connection:
        for table in _RUN_TABLES:
            connection.execute(f"DELETE FROM {table.name} WHERE list_contains(?, run_id)", [list(run_ids)])


def write_calibration(path: str | Path, run_id: str, stats) -> None:
    """A run's embedding statistics [4, d] (image mean, image std, text mean, text std), once."""
    with write_unit(path) as connection:
        insert_rows(connection, CALIBRATION, [{"run_id": run_id, "stats": array_to_blob(stats)}])


def write_samples(path: str | Path, samples: Sequence[SampleRow]) -> None:
    """Probed samples in one short transaction; samples already stored are kept as they are."""
    rows = [{"run_id": sample.run_id, "sample_id": sample.sample_id, "position": sample.position,
             "gold": sample.gold, "n_options": sample.n_options, "x1": array_to_blob(sample.x1),
             "x2": array_to_blob(sample.x2), "probs": array_to_blob(sample.probs),
             "letter_mass": array_to_blob(sample.letter_mass), "split": sample.split, "question": sample.question,
             "options": _options_json(sample.options), "image": sample.image} for sample in samples]
    with write_unit(path) as connection:
        insert_rows(connection, SAMPLES, rows)


def write_hidden_states(path: str | Path, run_id: str, features: Mapping[str, np.ndarray]) -> None:
    """Samples' hidden-state features [source, stored layer, feature] in one short transaction; stored ones are kept."""
    rows = [{"run_id": run_id, "sample_id": sample_id, "features": array_to_blob(array.astype(np.float32))}
            for sample_id, array in features.items()]
    with write_unit(path) as connection:
        insert_rows(connection, HIDDEN_STATES, rows)


def _options_json(options: Sequence[str] | None) -> str | None:
    """A sample's option strings as the JSON list the `options` column holds (None stays NULL)."""
    return None if options is None else json.dumps(list(options))


def write_sample_texts(path: str | Path, run_id: str, texts: Sequence[SampleText]) -> None:
    """Attach question, options and image to stored samples of a run that have none yet, in one short transaction;
    each sample's three values are written together, and a sample that has them already is left as it is."""
    if not texts:
        return
    incoming = pa.table({"sample_id": pa.array([text.sample_id for text in texts], pa.string()),
                         "question": pa.array([text.question for text in texts], pa.string()),
                         "options": pa.array([_options_json(text.options) for text in texts], pa.string()),
                         "image": pa.array([text.image for text in texts], pa.binary())})
    with write_unit(path) as connection:
        connection.register("incoming_texts", incoming)
        try:
            connection.execute("UPDATE samples SET question = t.question, options = t.options, image = t.image "
                               "FROM incoming_texts t WHERE samples.run_id = ? AND samples.sample_id = t.sample_id "
                               "AND samples.question IS NULL", [run_id])
        finally:
            connection.unregister("incoming_texts")


def write_layer(path: str | Path, *, run_id: str, layer: int, estimator: str, atoms: Atoms, n_samples: int,
                accuracy: float | None, diagnostics: Mapping, fitted: bytes | None,
                pointwise: Mapping[str, Sequence[float]], sample_ids: Sequence[str]) -> None:
    """One layer's dataset atoms, diagnostics and fitted estimator, with its per-sample atoms, in one transaction."""
    row = {"run_id": run_id, "layer": layer, "estimator": estimator, **atoms.as_dict(), **atoms.bound_columns(),
           "n_samples": n_samples,
           "accuracy": accuracy, "diagnostics": json.dumps(diagnostics, default=str), "fitted": fitted}
    local = [{"run_id": run_id, "layer": layer, "estimator": estimator, "sample_id": sample_id,
              **{name: float(pointwise[name][index]) for name in ATOMS}} for index, sample_id in enumerate(sample_ids)]
    with write_unit(path) as connection:
        insert_rows(connection, LAYER_ATOMS, [row])
        insert_rows(connection, POINTWISE_ATOMS, local)


def write_published(path: str | Path, runs: Sequence[Mapping], layers: Sequence[Mapping]) -> None:
    """Runs and layer rows of published results in one transaction: each run {run_id, model, family, task,
    checkpoint, step, stage, n_layers, settings}, each layer {run_id, layer, estimator, r, u1, u2, s, accuracy,
    diagnostics}; atoms the source does not give are None (NULL), and there are no intervals or samples. A layer
    of None is the output of a model whose depth the source does not give."""
    created = time.time()
    run_rows = [{**run, "settings": json.dumps(run["settings"], sort_keys=True), "created": created} for run in runs]
    layer_rows = [{**layer, "layer": UNKNOWN_DEPTH_LAYER if layer["layer"] is None else layer["layer"],
                   **dict.fromkeys(BOUND_COLUMNS), "n_samples": None, "fitted": None,
                   "diagnostics": json.dumps(layer["diagnostics"], sort_keys=True)} for layer in layers]
    with write_unit(path) as connection:
        insert_rows(connection, RUNS, run_rows)
        insert_rows(connection, LAYER_ATOMS, layer_rows)


def write_task_pid(path: str | Path, exact: Mapping[str, tuple[Atoms, str]]) -> None:
    """The exact PID of each synthetic task's generator and the atom it plants, replacing earlier values."""
    rows = [{"task": task, **atoms.as_dict(), "planted": planted} for task, (atoms, planted) in exact.items()]
    with write_unit(path) as connection:
        insert_rows(connection, TASK_PID, rows, replace=True)


# Which rows `compact` keeps: every table except the per-sample ones keeps the runs of models not excluded;
# samples, their hidden-state features and pointwise atoms keep only each model's last checkpoint.
_KEPT = "run_id IN (SELECT run_id FROM runs WHERE NOT list_contains(?, model))"
_FINAL = (_KEPT + " AND run_id IN (SELECT run_id FROM runs r WHERE step = "
          "(SELECT max(step) FROM runs m WHERE m.model = r.model))")
_COMPACT = {RUNS: _KEPT, CALIBRATION: _KEPT, TASK_PID: None, LAYER_ATOMS: _KEPT, SAMPLES: _FINAL,
            POINTWISE_ATOMS: _FINAL, HIDDEN_STATES: _FINAL}


def compact(source: str | Path, target: str | Path, exclude_models: set[str] = frozenset()) -> None:
    """Add a results database's rows to `target`, per-sample rows (probe outputs, pointwise atoms) of each model's
    last checkpoint only, leaving out the models in `exclude_models`.

    Every checkpoint keeps its run, calibration and per-layer atoms with diagnostics; leaving out the per-sample
    rows of intermediate checkpoints keeps a shipped file small. Columns added since `source` was written are NULL.
    """
    with write_unit(target) as destination:
        for table, condition in _COMPACT.items():
            where = f" WHERE {condition}" if condition else ""
            sql = f"SELECT {present_select(source, table)} FROM {table.name}{where}"
            rows = query(source, sql, [sorted(exclude_models)] if condition else None)
            insert_rows(destination, table, [dict(zip(table.column_names, row)) for row in rows])
