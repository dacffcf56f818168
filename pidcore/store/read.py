"""Read access to the results database: short read-only connections that retry while a writer holds the lock, read
results only (no other file, no extension, none of DuckDB's own state), within a time and memory limit, and turn
DuckDB's errors into a StoreError that says what is wrong."""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TypeVar

import duckdb
import numpy as np
import pandas as pd

from pidcore.atoms import ATOMS, BOUND_COLUMNS, Atoms
from pidcore.store.blobs import blob_to_array
from pidcore.store.schema import (ATOM_COLUMN_TYPES, ATOM_COLUMNS, ATOMS_VIEW, CURRENT_RUNS_SQL, HIDDEN_STATES,
                                  LAYER_SQL, OBJECTS, RUNS, SAMPLES, TABLES, TASK_PID, LayerResult, RunProgress,
                                  SampleRow, Table)

T = TypeVar("T")
_DIAGNOSTIC_KEYS = ["run_id", "model", "task", "checkpoint", "layer", "estimator", "n_samples"]
_DIAGNOSTIC_DETAILS = ["mode", "sinkhorn_residual", "sinkhorn_converged", "stopped_because", "best_epoch",
                       "initial_bits", "kept_bits", "floor_bits"]
_MARGINAL_GAPS = ["marginal_gap_x1", "marginal_gap_x2"]
_NUMERIC_DETAILS = [*_MARGINAL_GAPS, "sinkhorn_residual", "best_epoch", "initial_bits", "kept_bits", "floor_bits"]
DIAGNOSTIC_COLUMNS = [*_DIAGNOSTIC_KEYS, "marginal_gap", *_DIAGNOSTIC_DETAILS]
# What a NULL name in a foreign or crafted file reads as, so that rows still group, sort and join by their names.
NO_NAME = "(no name)"
_NAME_COLUMNS = ["model", "family", "task", "checkpoint", "estimator"]
SAMPLE_TABLE_COLUMNS = ["sample_id", "position", "gold", "n_options", "question", "options", "has_image", "probs"]
# A reader opens results and nothing else: a view in a crafted file that reads another file (read_csv, ATTACH, a
# URL) fails instead of reading it, no extension is loaded or installed on its behalf, and it cannot read this
# process's Python objects by name. Each query gives up after max_execution_time (ms) and past memory_limit, with
# nothing spilled to disk (no temp_directory), so a crafted view (a huge recursive query, a giant aggregate) cannot
# hold a page or the machine; a results database reads in far less. The home directory is a neutral one, so the
# settings a crafted view might still compute (_results_only) name no real path but the database's own.
READ_ONLY_CONFIG = {"enable_external_access": False, "autoload_known_extensions": False,
                    "autoinstall_known_extensions": False, "python_enable_replacements": False,
                    "max_execution_time": 20_000, "memory_limit": "1GB", "threads": 2, "temp_directory": "",
                    "home_directory": "/nonexistent", "lock_configuration": True}
# What a failed read means, by DuckDB's error; any other DuckDB error is a table or view that cannot be read.
_CRAFTED = "so it is probably crafted, or not a results database"
_READ_FAILURES = {
    duckdb.CatalogException: "lacks a table this needs",
    duckdb.PermissionException: "has a view that reads other files, which results may not do",
    duckdb.IOException: "is damaged (cut short, or not completely written)",
    duckdb.InterruptException: f"took too long to read (over {{seconds:g}} s), {_CRAFTED}",
    duckdb.OutOfMemoryException: f"needed too much memory to read (over {{memory}}), {_CRAFTED}",
}
# What a results table or view may do when read: scan the database's own tables (no table function, so none of
# DuckDB's settings, catalog, secrets or files) and call functions of their arguments only (those DuckDB marks
# CONSISTENT, less version()). It is checked on DuckDB's own plan of each (views, macros and generated columns
# expanded, names resolved), so no spelling gets past it: case, quotes, a schema or catalog, a system view, a CTE,
# query(). A call the binder computes in advance leaves no trace in the plan; the neutral home directory above
# leaves it nothing to show.
_PLAN_SQL = "SELECT json_serialize_plan(?, optimize := false)"
_ARGUMENT_ONLY_SQL = "SELECT DISTINCT function_name FROM duckdb_functions() WHERE stability = 'CONSISTENT'"
_TABLE_SCAN = ["seq_scan"]
# Planning errors a read raises by itself, saying what is wrong: a missing table, a broken view, a file read.
_READ_ANYWAY = {"catalog", "binder", "permission"}
_SYSTEM_CALLS = "has a view that calls DuckDB's system functions, which results may not do"


class StoreError(RuntimeError):
    """The results database is missing, locked for too long, damaged, or not a results database."""


def connect_read_only(path: str | Path, attempts: int = 20, wait_s: float = 0.25,
                      time_limited: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the database read-only for results only, retrying while another process holds its write lock; one
    whose tables or views reach DuckDB's own state is refused (_results_only). `time_limited` False: no time limit
    per query (a sweep's merge reads a large shard of its own between its writes, for as long as they take)."""
    config = READ_ONLY_CONFIG if time_limited else {**READ_ONLY_CONFIG, "max_execution_time": 0}
    path = Path(path)
    if not _is_file(path):
        raise StoreError(f"no results database at {path}")
    for attempt in range(attempts):
        try:
            return _results_only(duckdb.connect(str(path), read_only=True, config=config), path)
        except duckdb.IOException as error:
            if not is_locked(error):
                raise StoreError(f"{path} is not a DuckDB database, or it is damaged: {_first_line(error)}") from error
            if attempt == attempts - 1:
                raise StoreError(f"could not open {path} read-only: {_first_line(error)}") from error
            time.sleep(wait_s)
        except duckdb.Error as error:
            raise StoreError(f"{path} is not a DuckDB database this can open: {_first_line(error)}") from error
    raise AssertionError("unreachable")


def _is_file(path: str | Path) -> bool:
    """Whether a file is there; False also where the name cannot be looked up (too long for the file system)."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def _results_only(connection: duckdb.DuckDBPyConnection, path: Path) -> duckdb.DuckDBPyConnection:
    """The connection, once DuckDB's plan of reading each results table and view it holds shows only scans of its
    tables and functions of their arguments (_system_calls); else closed, with a StoreError naming the calls."""
    try:
        for name in sorted(OBJECTS):
            if calls := _system_calls(_plan(connection, path, name)):
                raise StoreError(f"{path} {_SYSTEM_CALLS}: {name} calls {', '.join(sorted(calls))}")
    except duckdb.Error as error:
        connection.close()
        raise StoreError(f"{path} {_read_failure(error)}: {_first_line(error)}") from error
    except StoreError:
        connection.close()
        raise
    return connection


def _plan(connection: duckdb.DuckDBPyConnection, path: Path, name: str) -> dict:
    """DuckDB's plan of reading one table or view, from JSON; empty where DuckDB cannot plan it for a reason the
    read that needs it reports itself (_READ_ANYWAY), a StoreError for any other."""
    try:
        plan = json.loads(connection.execute(_PLAN_SQL, [f"SELECT * FROM {name}"]).fetchone()[0])
    except RecursionError as error:  # nested deeper than Python's stack, which no results view is
        raise StoreError(f"{path} has a view nested too deeply to check, {_CRAFTED}") from error
    if plan.get("error_type") in _READ_ANYWAY:
        return {}
    if plan.get("error"):
        raise StoreError(f"{path} has a view DuckDB cannot plan, {_CRAFTED}: {plan.get('error_message')}")
    return plan


def _system_calls(plan: dict) -> set[str]:
    """The names of the table functions and functions a serialized plan calls that _allowed does not allow."""
    functions, found, nodes = _argument_only_functions(), set(), [plan]
    while nodes:  # a loop, not recursion: a plan may be nested deeper than Python's stack
        node = nodes.pop()
        if isinstance(node, dict):
            name = node.get("qname")
            path = name.get("path") if isinstance(name, dict) else None
            if path is not None and not _allowed(path, node.get("type") == "LOGICAL_GET", functions):
                found.add(path[-1])
            nodes.extend(node.values())
        elif isinstance(node, list):
            nodes.extend(node)
    return found


def _allowed(path: list[str], scan: bool, functions: frozenset[str]) -> bool:
    """Whether a plan may call this (by its qualified name): as a scan, only a table's; as a function, one of
    `functions` or one the binder makes itself (a comparison, a cast: a one-part name)."""
    if scan:
        return path == _TABLE_SCAN
    return len(path) == 1 or (path[:-1] == ["system", "main"] and path[-1] in functions)


@functools.cache
def _argument_only_functions() -> frozenset[str]:
    """DuckDB's functions whose result depends on their arguments alone (stability CONSISTENT), less version()."""
    with duckdb.connect() as connection:
        return frozenset(row[0] for row in connection.execute(_ARGUMENT_ONLY_SQL).fetchall()) - {"version"}


def is_locked(error: duckdb.IOException) -> bool:
    """Whether opening failed only because another process holds the file's lock (worth waiting for)."""
    return "lock" in str(error).lower()


def _first_line(error: Exception) -> str:
    """The first line of an error's message (DuckDB appends hints and candidate lists on later lines)."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def query(path: str | Path, sql: str, parameters: list | None = None) -> list[tuple]:
    """One parameterised query on a short read-only connection, as a list of rows."""
    return _on_short_connection(path, lambda connection: connection.execute(sql, parameters or []).fetchall())


def query_frame(path: str | Path, sql: str, parameters: list | None = None) -> pd.DataFrame:
    """One parameterised query on a short read-only connection, as a DataFrame."""
    return _on_short_connection(path, lambda connection: connection.execute(sql, parameters or []).df())


def _on_short_connection(path: str | Path, work: Callable[[duckdb.DuckDBPyConnection], T],
                         attempts: int = 20) -> T:
    """Open read-only, do `work`, close; any DuckDB error on the way is a StoreError saying what it means."""
    connection = connect_read_only(path, attempts)
    try:
        return work(connection)
    except duckdb.Error as error:
        raise StoreError(f"{path} {_read_failure(error)}: {_first_line(error)}") from error
    finally:
        connection.close()


def _read_failure(error: duckdb.Error) -> str:
    """What a DuckDB error during a read says about the database."""
    for kind, meaning in _READ_FAILURES.items():
        if isinstance(error, kind):
            return meaning.format(seconds=READ_ONLY_CONFIG["max_execution_time"] / 1000,
                                  memory=READ_ONLY_CONFIG["memory_limit"])
    return "has a table or view that cannot be read"


def present_columns(connection: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """The tables and views an open database holds, with their columns."""
    present: dict[str, set[str]] = {}
    rows = connection.execute("SELECT table_name, column_name FROM information_schema.columns").fetchall()
    for table, column in rows:
        present.setdefault(table, set()).add(column)
    return present


def _objects(path: str | Path) -> dict[str, set[str]]:
    return _on_short_connection(path, present_columns)


def present_select(path: str | Path, table: Table, names: Sequence[str] | None = None) -> str:
    """A SELECT list of a table's columns (all, or these names), each one the database predates read as NULL."""
    present = _objects(path).get(table.name, set())
    return ", ".join(name if name in present else f"NULL AS {name}" for name in names or table.column_names)


def read_atoms(path: str | Path) -> pd.DataFrame:
    """All rows of the public `atoms` view; columns added since a database was written (the bounds) are NaN,
    NULL names read as NO_NAME, and a crafted view's columns of another type read as the store's (_as_stored)."""
    view = dict(query(path, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?",
                      [ATOMS_VIEW]))
    if not view:
        raise StoreError(f"{path} has no `atoms` view; is it a results database?")
    frame = query_frame(path, f"SELECT {', '.join(_as_stored(path, c, view[c]) for c in ATOM_COLUMNS if c in view)} "
                              f"FROM {ATOMS_VIEW}")
    return _named(frame.reindex(columns=ATOM_COLUMNS))


# The column types a number may arrive as from a crafted view (DuckDB's names in information_schema).
_NUMERIC_TYPE = re.compile(r"(U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)|FLOAT|DOUBLE|DECIMAL\(\d+,\s*\d+\))")


def _as_stored(path: str | Path, column: str, kind: str) -> str:
    """A SELECT item reading one column of the `atoms` view as the type the store writes it: a name of another type
    as its text, a number of another numeric type converted (NULL where it does not fit); a number column of a
    non-numeric type is a StoreError that names it."""
    wanted = ATOM_COLUMN_TYPES[column]
    if kind == wanted:
        return column
    if wanted == "VARCHAR":
        return f"CAST({column} AS VARCHAR) AS {column}"
    if _NUMERIC_TYPE.fullmatch(kind):
        return f"TRY_CAST({column} AS {wanted}) AS {column}"
    raise StoreError(f"{path} has an `atoms` view whose column {column} holds {kind[:40]}, not numbers; "
                     "it is not a results database this can read")


def _named(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with NULL names (model, family, task, checkpoint, estimator) read as NO_NAME."""
    return frame.assign(**{column: frame[column].astype(object).where(frame[column].notna(), NO_NAME)
                           for column in _NAME_COLUMNS if column in frame})


_RUN_NAMES = [name for name in RUNS.column_names if name not in ("settings", "created")]


def read_runs(path: str | Path) -> pd.DataFrame:
    """Every run: its id, names, checkpoint and depth (settings left out)."""
    return query_frame(path, f"SELECT {', '.join(_RUN_NAMES)} FROM runs ORDER BY created, run_id")


def read_run(path: str | Path, run_id: str) -> dict:
    """One run's id, names, checkpoint and depth, with its settings decoded (empty when they are not a JSON object),
    e.g. to reload the dataset it probed."""
    rows = query(path, f"SELECT {', '.join(_RUN_NAMES)}, settings FROM runs WHERE run_id = ?", [run_id])
    if not rows:
        raise StoreError(f"no run {run_id} in {path}")
    *names, settings = rows[0]
    return {**dict(zip(_RUN_NAMES, names)), "settings": _json_object(settings)}


def read_run_settings(path: str | Path) -> dict[str, dict]:
    """Every run's stored settings, decoded (empty where they are not a JSON object), by run id."""
    return {run_id: _json_object(text) for run_id, text in query(path, "SELECT run_id, settings FROM runs")}


def read_diagnostics(path: str | Path) -> pd.DataFrame:
    """Per run the `atoms` view shows and per layer: the estimator's diagnostics, flattened to DIAGNOSTIC_COLUMNS
    (so they join the view's rows one to one); a layer whose stored diagnostics are not a JSON object (or a value is
    not a number where one belongs) has them NaN."""
    keys = ", ".join(LAYER_SQL if key == "layer" else key for key in _DIAGNOSTIC_KEYS)
    frame = query_frame(path, f"SELECT {keys}, diagnostics FROM layer_atoms JOIN {CURRENT_RUNS_SQL} AS runs "
                              "USING (run_id)")
    details = pd.DataFrame([_json_object(text) for text in frame.pop("diagnostics")], index=frame.index,
                           columns=[*_MARGINAL_GAPS, *_DIAGNOSTIC_DETAILS])
    details[_NUMERIC_DETAILS] = details[_NUMERIC_DETAILS].apply(pd.to_numeric, errors="coerce")
    frame["marginal_gap"] = details[_MARGINAL_GAPS].abs().max(axis=1)
    for column in _DIAGNOSTIC_DETAILS:
        frame[column] = details[column]
    return _named(frame[DIAGNOSTIC_COLUMNS])


def _json_object(text: str | None) -> dict:
    """Stored JSON (a layer's diagnostics, a run's settings) as a dict; empty when missing or not a JSON object."""
    try:
        details = json.loads(text)
    except (TypeError, ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        return {}
    return details if isinstance(details, dict) else {}


def _json_strings(text: str | None) -> list[str] | None:
    """A stored `options` value as a list of strings; None when missing or not a JSON list of strings."""
    try:
        options = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None
    return options if isinstance(options, list) and all(isinstance(o, str) for o in options) else None


def read_letter_mass(path: str | Path, run_ids: list[str]) -> dict[str, float]:
    """Per run: the mean probability mass its full pass puts on the option letters at the output layer, over its
    stored samples (NaN where a run has no samples, an imported run has no mass, or a stored mass is unreadable)."""
    masses: dict[str, list[float]] = {run_id: [] for run_id in run_ids}
    for run_id, blob in query(path, "SELECT run_id, letter_mass FROM samples WHERE list_contains(?, run_id)",
                              [list(run_ids)]):
        masses[run_id].append(_output_mass(blob))
    return {run_id: float(np.nanmean(values)) if not np.isnan(values).all() else float("nan")
            for run_id, values in masses.items()}


def _output_mass(blob: bytes | None) -> float:
    """The full pass's letter mass at the output layer from one stored sample's blob; NaN when unreadable."""
    try:
        return float(blob_to_array(blob).reshape(3, -1)[0, -1])
    except (TypeError, ValueError, IndexError, EOFError):
        return float("nan")


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
    if not _is_file(path):
        return None
    rows = query(path, "SELECT stats FROM calibration WHERE run_id = ?", [run_id])
    return blob_to_array(rows[0][0]) if rows else None


def stored_sample_ids(path: str | Path, run_id: str) -> set[str]:
    """Ids of the samples of a run already stored."""
    if not _is_file(path):
        return set()
    return {row[0] for row in query(path, "SELECT sample_id FROM samples WHERE run_id = ?", [run_id])}


def stored_hidden_ids(path: str | Path, run_id: str) -> set[str]:
    """Ids of the samples of a run whose hidden-state features are stored."""
    if not _is_file(path) or HIDDEN_STATES.name not in _objects(path):
        return set()
    return {row[0] for row in query(path, "SELECT sample_id FROM hidden_states WHERE run_id = ?", [run_id])}


def load_hidden_states(path: str | Path, run_id: str) -> dict[str, np.ndarray]:
    """A run's stored hidden-state features by sample id ({} where none were kept, or the database predates them)."""
    if not _is_file(path) or HIDDEN_STATES.name not in _objects(path):
        return {}
    rows = query(path, "SELECT sample_id, features FROM hidden_states WHERE run_id = ?", [run_id])
    return {sample_id: blob_to_array(blob) for sample_id, blob in rows}


def load_samples(path: str | Path, run_id: str) -> list[SampleRow]:
    """A run's stored samples in dataset order, arrays and options decoded (question and options None where the
    database predates them). Images are left out, so estimating a run of large images stays light; read one with
    read_sample_image."""
    names = [field.name for field in fields(SampleRow) if field.name != "image"]
    rows = query(path, f"SELECT {present_select(path, SAMPLES, names)} FROM samples WHERE run_id = ? "
                       "ORDER BY position", [run_id])
    return [SampleRow(run, sample, position, gold, *(blob_to_array(blob) for blob in blobs), split, question,
                      _json_strings(options))
            for run, sample, position, gold, *blobs, split, question, options in rows]


def load_sample_columns(path: str | Path, run_id: str) -> dict[str, list]:
    """A run's stored samples in dataset order as columns, one list per SampleRow field but the texts and the image,
    the arrays as stored (.npy bytes, for blob_to_array or stacked_blobs)."""
    names = [field.name for field in fields(SampleRow) if field.name not in ("question", "options", "image")]
    rows = query(path, f"SELECT {present_select(path, SAMPLES, names)} FROM samples WHERE run_id = ? "
                       "ORDER BY position", [run_id])
    return {name: list(column) for name, column in zip(names, zip(*rows))} if rows else {name: [] for name in names}


def read_sample_table(path: str | Path, run_id: str) -> pd.DataFrame:
    """A run's stored samples in dataset order, for a table of them: SAMPLE_TABLE_COLUMNS, gold an integer or NA,
    options a list of strings or None, whether an image is stored (not the image itself, to stay light), and the
    letter distributions decoded [pass, stored layers, k]."""
    columns = present_select(path, SAMPLES, ["sample_id", "position", "gold", "n_options", "question", "options",
                                             "image", "probs"])
    frame = query_frame(path, "SELECT sample_id, position, gold, n_options, question, options, "
                              f"image IS NOT NULL AS has_image, probs FROM (SELECT {columns} FROM samples "
                              "WHERE run_id = ?) ORDER BY position", [run_id])
    return frame.assign(gold=frame["gold"].astype("Int64"), has_image=frame["has_image"].astype(bool),
                        question=frame["question"].astype(object).where(frame["question"].notna(), None),
                        options=[_json_strings(text) for text in frame["options"]],
                        probs=[blob_to_array(blob) for blob in frame["probs"]])[SAMPLE_TABLE_COLUMNS]


def read_sample_image(path: str | Path, run_id: str, sample_id: str) -> bytes | None:
    """One stored sample's image as PNG bytes; None when none is stored (or there is no such sample)."""
    rows = query(path, f"SELECT {present_select(path, SAMPLES, ['image'])} FROM samples "
                       "WHERE run_id = ? AND sample_id = ?", [run_id, sample_id])
    return bytes(rows[0][0]) if rows and rows[0][0] is not None else None


def read_run_questions(path: str | Path, run_ids: Sequence[str]) -> pd.DataFrame:
    """The distinct stored questions of these runs (run_id, question), e.g. to find the task whose questions a
    typed question resembles; empty where none is stored."""
    columns = present_select(path, SAMPLES, ["run_id", "question"])
    return query_frame(path, f"SELECT DISTINCT run_id, question FROM (SELECT {columns} FROM samples) "
                             "WHERE list_contains(?, run_id) AND question IS NOT NULL ORDER BY run_id, question",
                       [list(run_ids)])


def runs_without_texts(path: str | Path) -> list[str]:
    """Runs with stored samples that have no question attached (probed before samples kept their texts)."""
    columns = present_select(path, SAMPLES, ["run_id", "question"])
    rows = query(path, f"SELECT DISTINCT run_id FROM (SELECT {columns} FROM samples) WHERE question IS NULL "
                       "ORDER BY run_id")
    return [row[0] for row in rows]


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


def read_progress(path: str | Path, run_ids: Sequence[str]) -> dict[str, RunProgress]:
    """How far each of these runs got in a database: its depth, samples stored and layers stored per estimator
    (runs it does not hold are absent; a missing file holds none)."""
    if not _is_file(path):
        return {}

    def progress(connection: duckdb.DuckDBPyConnection) -> dict[str, RunProgress]:
        wanted = [list(run_ids)]
        found = {run_id: RunProgress(n_layers, samples, {}) for run_id, n_layers, samples in connection.execute(
            "SELECT r.run_id, r.n_layers, (SELECT count(*) FROM samples s WHERE s.run_id = r.run_id) FROM runs r "
            "WHERE list_contains(?, r.run_id)", wanted).fetchall()}
        for run_id, estimator, layers in connection.execute(
                "SELECT run_id, estimator, list(layer) FROM layer_atoms WHERE list_contains(?, run_id) "
                "GROUP BY run_id, estimator", wanted).fetchall():
            if run_id in found:
                found[run_id].layers[estimator] = set(layers)
        return found

    return _on_short_connection(path, progress)


def table_sizes(path: str | Path, attempts: int = 20) -> dict[str, int]:
    """Row counts of the results tables present (one try with attempts=1, for polling while a writer runs)."""

    def count(connection: duckdb.DuckDBPyConnection) -> dict[str, int]:
        names = sorted(set(present_columns(connection)) & {table.name for table in TABLES})
        return {name: connection.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in names}

    return _on_short_connection(path, count, attempts)


def read_sample_images(path: str | Path, run_id: str) -> dict[str, bytes]:
    """Every stored image of a run in one read, as PNG bytes by sample id (samples without one are absent)."""
    columns = present_select(path, SAMPLES, ["run_id", "sample_id", "image"])
    rows = query(path, f"SELECT sample_id, image FROM (SELECT {columns} FROM samples) "
                       "WHERE run_id = ? AND image IS NOT NULL", [run_id])
    return {sample_id: bytes(image) for sample_id, image in rows}


def read_caution_inputs(path: str | Path, run_ids: Sequence[str],
                        estimator: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the cautions (pidcore.analysis.cautions) judge these runs by, in two frames. Samples in dataset order:
    run_id, question, options (JSON text), image_digest (MD5 of the stored PNG; None where none is stored) and probs
    [pass, stored layers, k] decoded (None where unreadable). Layers of this estimator: run_id, layer and its
    diagnostics decoded (empty where they are not a JSON object)."""
    columns = present_select(path, SAMPLES, ["run_id", "position", "question", "options", "image", "probs"])
    wanted = [list(run_ids)]
    samples = query_frame(path, "SELECT run_id, question, options, md5(image) AS image_digest, probs FROM (SELECT "
                                f"{columns} FROM samples) WHERE list_contains(?, run_id) ORDER BY run_id, position",
                          wanted)
    samples["probs"] = [_array_or_none(blob) for blob in samples["probs"]]
    layers = query_frame(path, f"SELECT run_id, {LAYER_SQL}, diagnostics FROM layer_atoms WHERE estimator = ? AND "
                               "list_contains(?, run_id) ORDER BY run_id, layer", [estimator, *wanted])
    layers["diagnostics"] = [_json_object(text) for text in layers["diagnostics"]]
    return samples, layers


def _array_or_none(blob: bytes | None) -> np.ndarray | None:
    """A stored array decoded; None where it is missing or unreadable (a damaged or crafted file)."""
    try:
        return blob_to_array(blob)
    except (TypeError, ValueError, EOFError):
        return None


def read_evaluated_ids(path: str | Path, run_id: str, layer: int, estimator: str) -> list[str]:
    """The ids of the samples one layer of a run was evaluated on by an estimator (its pointwise rows), sorted."""
    return [row[0] for row in query(path, "SELECT sample_id FROM pointwise_atoms WHERE run_id = ? AND layer = ? "
                                          "AND estimator = ? ORDER BY sample_id", [run_id, layer, estimator])]
