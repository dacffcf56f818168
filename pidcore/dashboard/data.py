"""The pages' reads of the results database, cached per database file and its modification time.

A widget change reruns the page script; it must not reopen the database or decode blobs again. Each read is
cached under the file's path and (modification time, size) of the file and of its write-ahead log, so a
`profile` still running into the same file shows its new rows at the next rerun, and letter masses are decoded
only for the runs a view shows.
"""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from pidcore import store
from pidcore.analysis.flags import join_diagnostics, with_flags

CACHE_ENTRIES = 64


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


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def _atoms(db: str, stamp: tuple) -> pd.DataFrame:
    return store.read_atoms(db)


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def _atoms_with_diagnostics(db: str, stamp: tuple) -> pd.DataFrame:
    return join_diagnostics(store.read_atoms(db), store.read_diagnostics(db))


@st.cache_data(max_entries=4 * CACHE_ENTRIES, show_spinner=False)
def _letter_mass(db: str, stamp: tuple, run_id: str) -> float:
    return store.read_letter_mass(db, run_id)


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def _pointwise(db: str, stamp: tuple, model: str, task: str, checkpoint: str, estimator: str) -> pd.DataFrame:
    return store.read_pointwise(db, model, task, checkpoint, estimator)


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def _reference_runs(db: str, stamp: tuple, model: str, n_options: int) -> pd.DataFrame:
    return store.reference_runs(db, model, n_options)


def atoms(db: str) -> pd.DataFrame:
    """Every row of the public `atoms` view."""
    return _atoms(db, version(db))


def estimators(db: str) -> list[str]:
    """The estimators the database holds atoms for."""
    return sorted(atoms(db)["estimator"].unique())


def atoms_with_diagnostics(db: str, estimator: str | None) -> pd.DataFrame:
    """The `atoms` rows of one estimator, with their run id and diagnostics."""
    rows = _atoms_with_diagnostics(db, version(db))
    return rows[rows["estimator"] == estimator]


def flagged(rows: pd.DataFrame, db: str) -> pd.DataFrame:
    """The rows a view shows, with their run's letter mass and the flags of the stated rule."""
    stamp = version(db)
    return with_flags(rows, {run_id: _letter_mass(db, stamp, run_id) for run_id in rows["run_id"].dropna().unique()})


def pointwise(db: str, model: str, task: str, checkpoint: str, estimator: str) -> pd.DataFrame:
    """Per-sample (local) atoms of one run at every stored layer."""
    return _pointwise(db, version(db), model, task, checkpoint, estimator)


def reference_runs(db: str, model: str, n_options: int) -> pd.DataFrame:
    """Runs of `model` with `n_options` options that kept their fitted estimators."""
    return _reference_runs(db, version(db), model, n_options)
