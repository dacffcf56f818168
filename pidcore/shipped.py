"""Where the shipped data live: the demo's results database and final models, and the paper's published results
(the CSVs read off its figures, and the database built from them)."""

from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
DEFAULT_DB = DATA / "results.duckdb"
MODELS = DATA / "models"
PAPER_CSV = DATA / "reference" / "paper"
PAPER_DB = DATA / "paper.duckdb"
# The shipped databases by the name the sidebar offers them under.
SHIPPED_DBS = {"Demo zoo, computed here": DEFAULT_DB, "Published: Xiu et al. 2026, 26 models": PAPER_DB}
