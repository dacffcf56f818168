"""Where the shipped demo lives: the data folder, its results database and its final models."""

from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
DEFAULT_DB = DATA / "results.duckdb"
MODELS = DATA / "models"
