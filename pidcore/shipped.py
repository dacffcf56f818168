"""Where the dashboard and the shipped data live (the demo's results database and final models, the paper's
published results: the CSVs read off its figures and the database built from them), in a checkout or an installed
wheel; which folders the dashboard may open results from, and the results file it was started on (`--db`)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

# The folder holding app.py, pages/ and data/: the repository in a checkout (or an editable install), the package
# `pidcore.app` in an installed wheel (pyproject.toml maps the repository's top level onto it).
_INSTALLED = Path(__file__).resolve().parent / "app"
ROOT = _INSTALLED if (_INSTALLED / "app.py").is_file() else Path(__file__).resolve().parent.parent
APP = ROOT / "app.py"
DATA = ROOT / "data"
DEFAULT_DB = DATA / "results.duckdb"
MODELS = DATA / "models"
PAPER_CSV = DATA / "reference" / "paper"
PAPER_DB = DATA / "paper.duckdb"
# The shipped databases by the name the sidebar offers them under.
SHIPPED_DBS = {"Demo zoo, computed here": DEFAULT_DB, "Published: Xiu et al. 2026, 26 models": PAPER_DB}
# The folders (os.pathsep-separated) whose .duckdb files the dashboard opens besides the shipped ones; unset or
# empty: the shipped data/ folder and the folder the dashboard was started in.
RESULTS_DIRS_ENV = "PIDCORE_RESULTS_DIRS"
# The results file the dashboard was started on (`pidcore dashboard --db PATH`, `streamlit run app.py -- --db PATH`):
# the sidebar opens on it, and its folder is one the dashboard opens results from, whatever RESULTS_DIRS_ENV says.
STARTED_DB_ENV = "PIDCORE_DEFAULT_DB"


def started_db(environ: Mapping[str, str] | None = None) -> Path | None:
    """The results file the dashboard was started on, resolved (None: none), from `environ` (default os.environ)."""
    named = (os.environ if environ is None else environ).get(STARTED_DB_ENV, "").strip()
    return Path(named).expanduser().resolve() if named else None


def results_dirs(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The folders the dashboard may open results from, symlinks and `..` resolved, from `environ` (default
    os.environ, read at each call, so a change of the environment applies at the next rerun)."""
    environ = os.environ if environ is None else environ
    configured = [part for part in environ.get(RESULTS_DIRS_ENV, "").split(os.pathsep) if part.strip()]
    folders = [Path(folder).expanduser().resolve() for folder in configured or [DATA, Path.cwd()]]
    started = started_db(environ)
    return list(dict.fromkeys([*folders, *([started.parent] if started else [])]))


def checked_db(db: str) -> Path:
    """A results file named on the command line (`--db`), resolved; a ValueError saying why it cannot be opened."""
    try:  # RuntimeError: an unknown user's ~ or a loop of symlinks
        path = Path(db).expanduser().resolve()
    except RuntimeError as error:
        raise ValueError(f"--db {db!r}: no such file") from error
    if not db.strip() or not path.exists():
        raise ValueError(f"--db {db!r}: no such file")
    if not path.is_file():
        raise ValueError(f"--db {db!r}: not a file")
    if path.suffix != ".duckdb":
        raise ValueError(f"--db {db!r}: the dashboard opens .duckdb files only (as `pidcore profile` writes them)")
    if not os.access(path, os.R_OK):
        raise ValueError(f"--db {db!r}: not readable")
    return path


def started_env(db: str | None) -> dict[str, str]:
    """The environment that starts the dashboard on results file `db` (checked by checked_db); {}: `db` is None."""
    return {} if db is None else {STARTED_DB_ENV: str(checked_db(db))}


def db_argument(argv: list[str]) -> str | None:
    """The PATH of `--db PATH` (or `--db=PATH`) among a script's arguments, None: not given, "": given without one."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("--db")
    try:
        return parser.parse_known_args(argv)[0].db
    except argparse.ArgumentError:
        return ""
