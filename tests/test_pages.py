"""Every dashboard page, run by Streamlit's AppTest on the shipped demo database and on bad databases."""

from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from pidcore.shipped import DEFAULT_DB
from pidcore.store import ensure_schema

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGES = ["pages/overview.py", "pages/heatmap.py", "pages/layers.py", "pages/training.py"]


def _open(page, db=DEFAULT_DB, **params):
    app = AppTest.from_file(APP, default_timeout=90)
    app.switch_page(page)
    app.query_params["db"] = str(db)
    for name, value in params.items():
        app.query_params[name] = value
    app.run()
    assert not app.exception, [error.value for error in app.exception]
    return app


@pytest.mark.parametrize("page", PAGES)
def test_each_page_draws_its_chart_on_the_shipped_data(page):
    app = _open(page)
    assert len(app.get("plotly_chart")) == 1
    if page != "pages/overview.py":
        assert any(button.label == "Export report (HTML)" for button in app.get("download_button"))


def test_heatmap_labels_tasks_and_families_with_the_rule():
    app = _open("pages/heatmap.py")
    tasks, families = (markdown.value for markdown in app.markdown if markdown.value.startswith("**"))
    assert tasks.splitlines()[2:] == ["- language: knowledge-driven", "- redundancy: knowledge-driven",
                                      "- synergy: synergy-driven", "- vision: synergy-driven"]
    assert families.splitlines()[2:] == ["- idefics3: language-centric", "- llava: language-centric",
                                         "- qwen2_vl: language-centric"]
    assert any("A task is synergy-driven when" in caption.value for caption in app.caption)


def test_the_layer_page_reopens_the_view_in_the_url():
    app = _open("pages/layers.py", model="llava-s", task="language", layer="2")
    assert app.selectbox(key="model").value == "llava-s" and app.selectbox(key="task").value == "language"
    assert app.slider(key="layer").value == 2
    assert any("Phases found" in markdown.value for markdown in app.markdown)


def test_units_switch_to_fractions_of_the_total():
    app = _open("pages/layers.py", model="llava-s", task="language", units="fraction")
    values = [float(metric.value) for metric in app.metric]
    assert sum(values) == pytest.approx(1.0, abs=1e-6)


def test_training_page_marks_the_stage_2_rule():
    app = _open("pages/training.py", train_model="llava-s", train_task="synergy")
    assert any("Stage-2 rise in S" in caption.value for caption in app.caption)
    assert len(app.metric) == 4


@pytest.mark.parametrize("page", PAGES)
def test_a_missing_database_is_explained(page, tmp_path):
    app = _open(page, db=tmp_path / "missing.duckdb")
    assert any("no results database" in info.value for info in app.info)


@pytest.mark.parametrize("page", PAGES[1:])
def test_a_database_without_rows_is_explained(page, tmp_path):
    db = tmp_path / "empty.duckdb"
    ensure_schema(db)
    app = _open(page, db=db)
    assert app.warning or app.info


def test_a_file_that_is_not_a_results_database_is_explained(tmp_path):
    db = tmp_path / "other.duckdb"
    duckdb.connect(str(db)).close()
    app = _open("pages/heatmap.py", db=db)
    assert any("no `atoms` view" in info.value for info in app.info)
