"""The home page and the read-only store access it relies on, on a database written through the real schema."""

from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from pidcore.atoms import Atoms
from pidcore.dashboard.data import NOT_AVAILABLE
from pidcore.dashboard.sidebar import OTHER_FILE
from pidcore.dashboard.text import markdown_text
from pidcore.store import StoreError, read_atoms, register_run, write_layer

pytestmark = pytest.mark.usefixtures("results_folder")

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def write_one_run(path: Path, model: str = "tiny-llava", s: float = 0.5) -> None:
    """A results database holding one run of one layer, written the way `profile` writes."""
    register_run(path, run_id=f"run-{model}", model=model, family="llava", task="shapes:synergy", checkpoint="final",
                 step=100, stage="2", n_layers=4, settings={})
    write_layer(path, run_id=f"run-{model}", layer=4, estimator="batch-published", atoms=Atoms(0.1, 0.0, 0.2, s),
                n_samples=512, accuracy=0.95, diagnostics={"marginal_gap_x1": 0.0, "marginal_gap_x2": 0.0,
                                                           "sinkhorn_residual": 1e-8, "sinkhorn_converged": True},
                fitted=None, pointwise={}, sample_ids=[])


def open_database(app: AppTest, path) -> None:
    """Choose "another database file" in the sidebar and type its path."""
    app.sidebar.selectbox(key="source").set_value(OTHER_FILE).run()
    app.sidebar.text_input(key="db").input(str(path)).run()


def test_home_page_explains_and_handles_a_missing_database(tmp_path):
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    open_database(app, tmp_path / "missing.duckdb")
    assert not app.exception
    assert "Information Spectrum Explorer" in app.title[0].value
    assert any(markdown_text(NOT_AVAILABLE) in info.value for info in app.info)


def test_home_page_reads_a_results_database(tmp_path):
    db = tmp_path / "results.duckdb"
    write_one_run(db)
    write_one_run(db, model="tiny-qwen", s=0.25)
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    open_database(app, db)
    assert not app.exception
    assert [metric.value for metric in app.metric] == ["2", "1", "2"]


def test_read_atoms_rejects_a_database_without_the_view(tmp_path):
    db = tmp_path / "other.duckdb"
    duckdb.connect(str(db)).close()
    with pytest.raises(StoreError, match="no `atoms` view"):
        read_atoms(db)
    write_one_run(tmp_path / "ok.duckdb")
    row = read_atoms(tmp_path / "ok.duckdb").iloc[0]
    assert (row["model"], row["layer"], row["n_layers"], row["s"], row["accuracy"]) == ("tiny-llava", 4, 4, 0.5, 0.95)


def test_the_sidebar_opens_on_the_published_estimator(tmp_path):
    db = tmp_path / "results.duckdb"
    write_one_run(db)
    register_run(db, run_id="run-cal", model="tiny-llava", family="llava", task="shapes:vision", checkpoint="final",
                 step=100, stage="2", n_layers=4, settings={})
    write_layer(db, run_id="run-cal", layer=4, estimator="batch-calibrated", atoms=Atoms(0.1, 0.0, 0.2, 0.3),
                n_samples=512, accuracy=0.95, diagnostics={}, fitted=None, pointwise={}, sample_ids=[])
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    open_database(app, db)
    estimator = app.sidebar.selectbox(key="estimator")
    assert estimator.options == ["batch-published", "batch-calibrated"]
    assert estimator.value == "batch-published"
