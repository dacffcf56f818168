"""The home page and the read-only store access it relies on."""

from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from pidcore.store import StoreError, read_atoms

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def _make_results_db(path: Path) -> None:
    connection = duckdb.connect(str(path))
    connection.execute(
        "CREATE TABLE atom_rows (model VARCHAR, family VARCHAR, task VARCHAR, checkpoint VARCHAR, step BIGINT, "
        "stage VARCHAR, layer INTEGER, n_layers INTEGER, estimator VARCHAR, r DOUBLE, u1 DOUBLE, u2 DOUBLE, "
        "s DOUBLE, n_samples INTEGER, accuracy DOUBLE)"
    )
    connection.execute(
        "INSERT INTO atom_rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ["tiny-llava", "llava", "shapes:synergy", "final", 100, "stage2", 4, 4, "batch", 0.1, 0.0, 0.2, 0.5, 512,
         0.95],
    )
    connection.execute("CREATE VIEW atoms AS SELECT * FROM atom_rows")
    connection.close()


def test_home_page_explains_and_handles_a_missing_database(tmp_path):
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    app.sidebar.text_input[0].input(str(tmp_path / "missing.duckdb")).run()
    assert not app.exception
    assert "Information Spectrum Explorer" in app.title[0].value
    assert any("no results database" in info.value for info in app.info)


def test_home_page_reads_a_results_database(tmp_path):
    db = tmp_path / "results.duckdb"
    _make_results_db(db)
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    app.sidebar.text_input[0].input(str(db)).run()
    assert not app.exception
    assert [metric.value for metric in app.metric] == ["1", "1", "1"]


def test_read_atoms_rejects_a_database_without_the_view(tmp_path):
    db = tmp_path / "other.duckdb"
    duckdb.connect(str(db)).close()
    with pytest.raises(StoreError, match="no `atoms` view"):
        read_atoms(db)
    _make_results_db(tmp_path / "ok.duckdb")
    assert read_atoms(tmp_path / "ok.duckdb")["s"].tolist() == [0.5]
