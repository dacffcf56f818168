"""The pages' reads of the results database, cached per database file and its modification time.

A widget change reruns the page script; it must not reopen the database or decode blobs again. Each read is
cached under the file's path and (modification time, size) of the file and of its write-ahead log, so a
`profile` still running into the same file shows its new rows at the next rerun, and letter masses are decoded
only for the runs a view shows.

Only results are opened: a shipped database, or a readable .duckdb file under one of the folders of
pidcore.shipped.results_dirs (a ?db= link names any path); every other path, missing or not, gets the one
NOT_AVAILABLE message, so a link cannot tell whether a file exists. The message names the results folders by role,
not by path, so it tells a link nothing about the server's folders either.

The cache hands every session the same objects (st.cache_resource: no copy per rerun, which st.cache_data would
make by pickling), so what these functions return is read-only: pages filter and copy, never assign into them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from pidcore import store
from pidcore.analysis.cautions import Caution
from pidcore.analysis.cautions import cautions as all_cautions
from pidcore.analysis.findings import findings as all_findings
from pidcore.analysis.flags import join_diagnostics, with_flags
from pidcore.analysis.regimes import Regime, final_rows, task_regimes
from pidcore.dashboard.tables import samples_table
from pidcore.pipeline.settings import DEFAULT_ESTIMATOR, probe_label
from pidcore.probes.conventions import CLEAN
from pidcore.shipped import RESULTS_DIRS_ENV, SHIPPED_DBS, results_dirs
from pidcore.store.read import read_caution_inputs

CACHE_ENTRIES = 8  # a few databases or versions of one; a running `profile` makes a new version per rerun
# Where the dashboard opens results from and how to add a folder, said by role, never by path: every visitor of a
# shared link reads the same words, and learns no folder name of the server (`pidcore dashboard` prints the folders
# themselves on the terminal of whoever started it).
RESULTS_FOLDERS = (f"the folders listed in {RESULTS_DIRS_ENV} (separated by {os.pathsep!r}; by default the shipped "
                   "data/ folder and the folder the dashboard was started in), and the folder of a file it was "
                   "started on with --db")
NOT_AVAILABLE = ("This results database is not available. Choose a shipped one under Results, or a .duckdb file in "
                 f"a folder the dashboard opens results from: {RESULTS_FOLDERS}. To open a file elsewhere, restart "
                 f"the dashboard on it with pidcore dashboard --db PATH, or add its folder to {RESULTS_DIRS_ENV}")


def results_file(db: str) -> str:
    """The resolved path of a database the dashboard may open (a shipped one, or a readable .duckdb file under a
    results folder, symlinks and `..` resolved first); else a StoreError with the NOT_AVAILABLE message."""
    try:  # OSError: among others a name too long for the file system, which the same message answers
        path = Path(db).expanduser().resolve()
        shipped = path in {shipped_db.resolve() for shipped_db in SHIPPED_DBS.values()}
        listed = path.suffix == ".duckdb" and any(path.is_relative_to(folder) for folder in results_dirs())
        readable = (shipped or listed) and path.is_file() and os.access(path, os.R_OK)
    except (OSError, RuntimeError, ValueError) as error:
        raise store.StoreError(NOT_AVAILABLE) from error
    if not readable:
        raise store.StoreError(NOT_AVAILABLE)
    return str(path)


def version(db: str) -> tuple:
    """What changes when the database changes: (mtime_ns, size) of the file and of its WAL; () when missing."""
    stamps = []
    for path in (db, db + ".wal"):
        try:
            status = os.stat(path)
        except OSError:
            continue
        stamps.append((path, status.st_mtime_ns, status.st_size))
    return tuple(stamps)


@st.cache_resource(max_entries=CACHE_ENTRIES, show_spinner=False)
def _atoms(db: str, stamp: tuple) -> pd.DataFrame:
    return store.read_atoms(db)


@st.cache_resource(max_entries=CACHE_ENTRIES, show_spinner=False)
def _estimators(db: str, stamp: tuple) -> tuple[str, ...]:
    names = _atoms(db, stamp)["estimator"].unique()
    return tuple(sorted(names, key=lambda name: (name != DEFAULT_ESTIMATOR, name)))


@st.cache_resource(max_entries=CACHE_ENTRIES, show_spinner=False)
def _atoms_with_diagnostics(db: str, stamp: tuple, estimator: str | None) -> pd.DataFrame:
    atoms = _atoms(db, stamp)
    joined = join_diagnostics(atoms[atoms["estimator"] == estimator], store.read_diagnostics(db))
    labels = {run_id: probe_label(stored) for run_id, stored in store.read_run_settings(db).items()}
    return joined.assign(probes=joined["run_id"].map(labels).fillna(""))


@st.cache_resource(max_entries=CACHE_ENTRIES, show_spinner=False)
def _regimes(db: str, stamp: tuple, estimator: str | None) -> dict[str, Regime]:
    return task_regimes(final_rows(_atoms_with_diagnostics(db, stamp, estimator)))


@st.cache_resource(max_entries=CACHE_ENTRIES, show_spinner=False)
def _findings(db: str, stamp: tuple, estimator: str | None) -> dict:
    atoms = _atoms(db, stamp)
    return all_findings(atoms[atoms["estimator"] == estimator])


@st.cache_resource(max_entries=CACHE_ENTRIES, show_spinner=False)
def _letter_mass(db: str, stamp: tuple, run_ids: tuple[str, ...]) -> dict[str, float]:
    return store.read_letter_mass(db, list(run_ids))


@st.cache_resource(max_entries=CACHE_ENTRIES, show_spinner=False)
def _pointwise(db: str, stamp: tuple, model: str, task: str, checkpoint: str, estimator: str) -> pd.DataFrame:
    return store.read_pointwise(db, model, task, checkpoint, estimator)


@st.cache_resource(max_entries=CACHE_ENTRIES, show_spinner=False)
def _reference_runs(db: str, stamp: tuple, model: str, n_options: int, estimator: str) -> pd.DataFrame:
    return store.reference_runs(db, model, n_options, estimator)


def atoms(db: str) -> pd.DataFrame:
    """Every row of the public `atoms` view."""
    path = results_file(db)
    return _atoms(path, version(path))


@st.cache_resource(max_entries=4 * CACHE_ENTRIES, show_spinner=False)
def _run_atoms(db: str, stamp: tuple, key: tuple[str, str, str]) -> pd.DataFrame:
    atoms = _atoms(db, stamp)
    return atoms[(atoms[["model", "task", "checkpoint"]] == list(key)).all(axis=1)]


def run_atoms(db: str, key: tuple[str, str, str]) -> pd.DataFrame:
    """Every estimator's rows of the `atoms` view for one (model, task, checkpoint), the run it shows: filtered from
    the cached view once per run, for the depth page's other estimators of the chosen run."""
    path = results_file(db)
    return _run_atoms(path, version(path), key)


def estimators(db: str) -> list[str]:
    """The estimators the database holds atoms for, the default (the published one) first."""
    path = results_file(db)
    return list(_estimators(path, version(path)))


def atoms_with_diagnostics(db: str, estimator: str | None) -> pd.DataFrame:
    """The `atoms` rows of one estimator, with their run id and diagnostics."""
    path = results_file(db)
    return _atoms_with_diagnostics(path, version(path), estimator)


def regimes(db: str, estimator: str | None) -> dict[str, Regime]:
    """Each task's regime from its final rows: the rank correlations are the breadth page's slowest part, and they
    change only with the data."""
    path = results_file(db)
    return _regimes(path, version(path), estimator)


def findings(db: str, estimator: str | None) -> dict:
    """Every finding of one estimator's rows (pidcore.analysis.findings), by the rules the pages apply."""
    path = results_file(db)
    return _findings(path, version(path), estimator)


@st.cache_resource(max_entries=CACHE_ENTRIES, show_spinner=False)
def _cautions(db: str, stamp: tuple, estimator: str | None, run_ids: tuple[str, ...]) -> tuple[Caution, ...]:
    rows = _atoms_with_diagnostics(db, stamp, estimator)
    return tuple(all_cautions(rows[rows["run_id"].isin(run_ids)], *read_caution_inputs(db, run_ids, estimator)))


def cautions(db: str, estimator: str | None, run_ids: tuple[str, ...]) -> tuple[Caution, ...]:
    """The cautions (pidcore.analysis.cautions) on these runs of one estimator, judged once per run set."""
    path = results_file(db)
    return _cautions(path, version(path), estimator, run_ids)


def flagged(rows: pd.DataFrame, db: str) -> pd.DataFrame:
    """The rows a view shows, with their run's letter mass and the flags of the stated rule."""
    path = results_file(db)
    return with_flags(rows, _letter_mass(path, version(path), tuple(sorted(rows["run_id"].dropna().unique()))))


def pointwise(db: str, model: str, task: str, checkpoint: str, estimator: str) -> pd.DataFrame:
    """Per-sample (local) atoms of one run at every stored layer."""
    path = results_file(db)
    return _pointwise(path, version(path), model, task, checkpoint, estimator)


def reference_runs(db: str, model: str, n_options: int, estimator: str) -> pd.DataFrame:
    """Runs of `model` with `n_options` options that kept this estimator's fitted networks."""
    path = results_file(db)
    return _reference_runs(path, version(path), model, n_options, estimator)


@st.cache_resource(max_entries=CACHE_ENTRIES, show_spinner=False)
def _sample_table(db: str, stamp: tuple, run_id: str) -> pd.DataFrame:
    return store.read_sample_table(db, run_id)


def sample_table(db: str, run_id: str) -> pd.DataFrame:
    """A run's stored samples (question, options, gold, probe distributions, whether the image is kept)."""
    path = results_file(db)
    return _sample_table(path, version(path), run_id)


def sample_image(db: str, run_id: str, sample_id: str) -> bytes | None:
    """One stored sample's image as PNG bytes (None where it was not kept); read once, when a sample is opened."""
    return store.read_sample_image(results_file(db), run_id, sample_id)


def sample_record(db: str, run_id: str, sample_id: str) -> pd.Series | None:
    """One stored sample's row of `sample_table` (None: not stored)."""
    samples = sample_table(db, run_id)
    found = samples[samples["sample_id"] == sample_id]
    return None if found.empty else found.iloc[0]


def run_questions(db: str, run_ids: tuple[str, ...]) -> pd.DataFrame:
    """The distinct stored questions of some runs (run_id, question)."""
    path = results_file(db)
    return _run_questions(path, version(path), run_ids)


@st.cache_resource(max_entries=CACHE_ENTRIES, show_spinner=False)
def _run_questions(db: str, stamp: tuple, run_ids: tuple[str, ...]) -> pd.DataFrame:
    return store.read_run_questions(db, list(run_ids))


@st.cache_resource(max_entries=CACHE_ENTRIES, show_spinner=False)
def _runs(db: str, stamp: tuple) -> pd.DataFrame:
    return store.read_runs(db)


def run_model(db: str, run_id: str) -> str | None:
    """The model name a run was registered under (None: no such run)."""
    path = results_file(db)
    runs = _runs(path, version(path))
    found = runs[runs["run_id"] == run_id]
    return None if found.empty else str(found["model"].iloc[0])


@st.cache_resource(max_entries=CACHE_ENTRIES, show_spinner=False)
def _run_settings(db: str, stamp: tuple, run_id: str) -> dict:
    return store.read_run(db, run_id)["settings"]


def run_probe_mode(db: str, run_id: str) -> str:
    """The probe conventions a run was made with: its recorded `probes`, "clean" for runs made before the option
    existed."""
    path = results_file(db)
    return _run_settings(path, version(path), run_id).get("probes", CLEAN)


@st.cache_resource(max_entries=4 * CACHE_ENTRIES, show_spinner=False)
def _samples_at_layer(db: str, stamp: tuple, run_id: str, key: tuple, estimator: str, layer: int,
                      n_layers: int) -> pd.DataFrame:
    model, task, checkpoint = key
    pointwise = _pointwise(db, stamp, model, task, checkpoint, estimator)
    return samples_table(_sample_table(db, stamp, run_id), pointwise[pointwise["layer"] == layer], layer, n_layers)


def samples_at_layer(db: str, row: pd.Series, estimator: str) -> pd.DataFrame:
    """The drill-down table of one row of the `atoms` view (a run at one layer): its samples with their probe
    distributions and pointwise atoms, built once per run and layer."""
    path = results_file(db)
    return _samples_at_layer(path, version(path), row["run_id"], (row["model"], row["task"], row["checkpoint"]),
                             estimator, int(row["layer"]), int(row["n_layers"]))
