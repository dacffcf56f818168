"""Where the dashboard and the shipped data live (the demo's results database and final models, the paper's
published results: the CSVs read off its figures and the database built from them), in a checkout or an installed
wheel; and which folders the dashboard may open results from."""

import os
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


def results_dirs() -> list[Path]:
    """The folders the dashboard may open results from, symlinks and `..` resolved (read at each call, so a
    change of the environment applies at the next rerun)."""
    configured = [part for part in os.environ.get(RESULTS_DIRS_ENV, "").split(os.pathsep) if part.strip()]
    return [Path(folder).expanduser().resolve() for folder in configured or [DATA, Path.cwd()]]
