"""Every dashboard page, run by Streamlit's AppTest on the shipped demo database and on bad databases."""

import json
from urllib.parse import parse_qsl

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from pidcore.dashboard.data import NOT_AVAILABLE
from pidcore.dashboard.text import markdown_text
from pidcore.shipped import DEFAULT_DB, PAPER_DB
from pidcore.store import ensure_schema
from tests.app_pages import APP, open_page

pytestmark = pytest.mark.usefixtures("results_folder")

PAGES = ["pages/overview.py", "pages/breadth.py", "pages/depth.py", "pages/timeline.py"]
CHARTS = {"pages/overview.py": 1, "pages/breadth.py": 2, "pages/depth.py": 1, "pages/timeline.py": 1}


def _open(page, db=DEFAULT_DB, **params):
    """Run a page of the app on a database (the shipped demo by default) with more URL parameters."""
    return open_page(page, db, **params)


@pytest.mark.parametrize("db", [DEFAULT_DB, PAPER_DB], ids=["demo", "paper"])
@pytest.mark.parametrize("page", PAGES)
def test_each_page_draws_its_charts_on_both_shipped_databases(page, db):
    app = _open(page, db)
    assert len(app.get("plotly_chart")) == CHARTS[page]
    if page != "pages/overview.py":
        assert any(button.label == "Export report (HTML)" for button in app.get("download_button"))


def _table(app, key_column):
    """The breadth page's dataframe whose first data column after `source` is `key_column`, by that column."""
    (frame,) = [element.value for element in app.dataframe if key_column in element.value.columns]
    return frame.set_index(key_column)


def test_the_breadth_page_shows_the_papers_regimes_and_strategies():
    app = _open("pages/breadth.py", PAPER_DB)
    regimes = _table(app, "task")
    assert regimes["regime"].to_dict() == {"MMBench": "synergy-driven", "PMC-VQA": "knowledge-driven",
                                           "POPE": "synergy-driven", "Reefknot": "knowledge-driven"}
    assert regimes.loc["MMBench", "rho S"] == pytest.approx(0.75, abs=1e-3) and set(regimes["models"]) == {26}
    strategies = _table(app, "family")["strategy"]
    assert {family: strategies[family] for family in ("InternVL2.5", "Gemma3")} == {
        "InternVL2.5": "fusion-centric", "Gemma3": "language-centric"}
    assert any("A task is synergy-driven when" in caption.value for caption in app.caption)


def test_the_breadth_page_says_undetermined_where_the_demo_cannot_support_a_rule():
    app = _open("pages/breadth.py")
    regimes = _table(app, "task")
    assert set(regimes["regime"]) == {"undetermined"}
    assert set(regimes["why"]) == {"only 4 model(s) with an accuracy; a rank correlation needs at least 5"}
    strategies = _table(app, "family")
    assert set(strategies["strategy"]) == {"undetermined"} and all(
        why.startswith("no synergy-driven task") for why in strategies["why"])


def test_comparing_with_the_paper_on_the_demo_says_no_task_lines_up():
    app = _open("pages/breadth.py", compare="true")
    assert any("No task of this database has one of the paper's task names" in info.value for info in app.info)


def test_the_layer_page_reopens_the_view_in_the_url():
    app = _open("pages/depth.py", model="llava-s", task="language", layer="2")
    assert app.selectbox(key="model").value == "llava-s" and app.selectbox(key="task").value == "language"
    assert app.select_slider(key="layer").value == 2
    assert any("Phases found" in markdown.value for markdown in app.markdown)


def test_the_layer_page_overlays_the_papers_curves_on_a_zoo_model():
    app = _open("pages/depth.py", model="llava-m", task="synergy", compare="true", depth="true")
    overlay = app.multiselect(key="overlay")
    paper = [label for label in overlay.options if "(paper)" in label]
    assert len(paper) == 8 and "Qwen2.5-VL-3B (paper) · MMBench · final" in paper
    overlay.set_value(paper[:4]).run()
    assert not app.exception and len(app.get("plotly_chart")) == 1


def test_the_papers_layer_curves_start_at_layer_1_and_show_a_silent_phase():
    app = _open("pages/depth.py", PAPER_DB, model="LLaVA-1.5-7B", task="MMBench")
    assert app.select_slider(key="layer").options[0] == "1" and app.select_slider(key="layer").value == 32
    assert any("silent 1-20" in markdown.value for markdown in app.markdown)


@pytest.mark.parametrize(("model", "three"), [("LLaVA-1.5-7B", "yes"), ("Qwen2.5-VL-3B", "no")])
def test_the_depth_page_calls_a_curve_three_phase_only_with_its_phases_in_order(model, three):
    app = _open("pages/depth.py", PAPER_DB, model=model, task="MMBench")
    assert any(f"Three-phase pattern: **{three}**" in markdown.value for markdown in app.markdown)


def _followed(link) -> AppTest:
    """The page a page link opens, with its query parameters, as a click on it opens it."""
    app = AppTest.from_file(APP, default_timeout=90)
    app.switch_page(f"pages/{ {'heatmap': 'breadth', 'layers': 'depth', 'training': 'timeline'}[link.page] }.py")
    for name, value in parse_qsl(link.query_string):
        app.query_params[name] = value
    app.run()
    assert not app.exception, [error.value for error in app.exception]
    return app


def test_the_overview_leads_with_the_papers_findings_each_opening_its_page_on_them():
    app = AppTest.from_file(APP, default_timeout=90).run()  # a newcomer's first view: the demo zoo chosen
    assert app.sidebar.selectbox(key="source").value.startswith("Demo zoo")
    assert app.subheader[0].value == "The paper's landscape"
    links = [element.proto for element in app.get("page_link")][:4]
    labels = [markdown.value.replace("\\", "") for markdown in app.markdown][1:5]  # after the introduction
    assert labels[0] == "Tasks: knowledge-driven PMC-VQA, Reefknot; synergy-driven MMBench, POPE."
    assert labels[1].startswith("Model families: fusion-centric InternVL2.5, InternVL3, LLaVA-1.5")
    assert "3 of 8 layer curves show the three-phase pattern" in labels[2]
    assert "S rises in stage 2 in 4 of 4 trajectories" in labels[3]
    assert [link.label for link in links] == [f"Open {where} on the paper's results" for where in (
        "the breadth page", "the breadth page", "a three-phase curve on the depth page", "the time page")]
    assert "pidcore dashboard --db" in app.caption[0].value and "Results" in app.caption[0].value
    breadth, depth, timeline = _followed(links[0]), _followed(links[2]), _followed(links[3])
    assert breadth.sidebar.selectbox(key="source").value.startswith("Published")
    assert any("Three-phase pattern: **yes**" in markdown.value for markdown in depth.markdown)
    assert timeline.selectbox(key="train_model").value == "LLaVA-1.5-13B"


def test_the_samples_table_shows_its_atoms_first_and_fits_every_column_to_its_widest_cell():
    app = _open("pages/depth.py", model="llava-m", task="synergy", samples="true")
    (frame,) = app.dataframe
    assert list(frame.value.columns)[:5] == ["sample", "R (bits)", "U1 (bits)", "U2 (bits)", "S (bits)"]
    widths = {column: config.get("width", 0) for column, config in json.loads(frame.proto.columns).items()}
    for column in ["sample", "gold", "answer", "full (image + question)"]:
        widest = max(len(column), *frame.value[column].dropna().astype(str).str.len())
        assert widths[column] >= 8 * widest, column


def test_another_model_opens_on_its_output_layer_and_compared_curves_are_in_step_order():
    app = _open("pages/depth.py", model="llava-m", task="synergy")
    app.select_slider(key="layer").set_value("1").run()
    app.selectbox(key="model").set_value("llava-s").run()
    assert app.select_slider(key="layer").value == 4 and "layer" not in app.query_params  # llava-s has 4 layers
    overlays = [option for option in app.multiselect(key="overlay").options if option.startswith("llava-m · synergy")]
    steps = [int(option.rsplit("step", 1)[1]) for option in overlays if "step" in option]
    assert steps == sorted(steps) and len(steps) > 2


def test_the_papers_training_curve_says_it_comes_from_another_figure_than_its_final_atoms():
    """LLaVA-1.5-7B's S on MMBench is 0.69 in the paper's bar figure and 0.98 at its last training checkpoint."""
    paper = _open("pages/timeline.py", PAPER_DB, train_model="LLaVA-1.5-7B", train_task="MMBench")
    overlaid = _open("pages/timeline.py", train_model="llava-s", train_task="synergy", compare="true",
                     train_overlay="LLaVA-1.5-7B (paper) · MMBench")
    for app in (paper, overlaid):
        (note,) = [caption.value for caption in app.caption if "two figures of the paper" in caption.value]
        assert markdown_text("LLaVA-1.5-7B on MMBench: S 0.69 bits in the bar figure") in note
        assert markdown_text("0.98 at the last training checkpoint") in note
    zoo = _open("pages/timeline.py", train_model="llava-s", train_task="synergy")
    assert not any("two figures of the paper" in caption.value for caption in zoo.caption)


def test_the_regime_and_family_tables_show_p_values_in_scientific_notation_and_no_cell_cut():
    """Seen cut in the meeting room: ".00001", "000008" (read as 8), "knowledge-driv", "InstructBLI"."""
    app = _open("pages/breadth.py", PAPER_DB)
    regimes, families = (_table(app, column).reset_index() for column in ("task", "family"))
    configs = {frame.value.columns[1]: json.loads(frame.proto.columns) for frame in app.dataframe}
    assert all(configs["task"][column]["type_config"]["format"] == "%.1e" for column in regimes if
               column.startswith("p ") or column.startswith("Steiger p"))
    for frame, config in ((regimes, configs["task"]), (families, configs["family"])):
        for column in ("regime", "family", "strategy"):
            if column in frame:
                assert config[column]["width"] >= 8 * frame[column].str.len().max(), column
    presenting = _open("pages/breadth.py", PAPER_DB, presentation="true")  # the grid's text grows with the page's
    widths = {frame.value.columns[1]: json.loads(frame.proto.columns) for frame in presenting.dataframe}
    assert widths["task"]["regime"]["width"] >= 8 * len("knowledge-driven") * 22 / 16


def test_units_switch_to_fractions_of_the_total():
    app = _open("pages/depth.py", model="llava-s", task="language", units="fraction")
    values = [float(metric.value) for metric in app.metric]
    assert sum(values) == pytest.approx(1.0, abs=1e-6)


def test_training_page_marks_the_stage_2_rule():
    app = _open("pages/timeline.py", train_model="llava-s", train_task="synergy")
    assert any("Stage-2 rise in S" in caption.value for caption in app.caption)
    assert len(app.metric) == 4


def test_the_training_page_shows_the_papers_llava_and_lines_it_up_with_the_zoo():
    app = _open("pages/timeline.py", PAPER_DB, train_model="LLaVA-1.5-7B", train_task="MMBench")
    assert any("+0.484 bits (a stage-2 rise)" in markdown.value for markdown in app.markdown)
    zoo = _open("pages/timeline.py", train_model="llava-s", train_task="synergy", compare="true")
    overlay = zoo.multiselect(key="train_overlay")
    assert {"LLaVA-1.5-7B (paper) · MMBench", "LLaVA-1.5-13B (paper) · PMC-VQA"} <= set(overlay.options)
    overlay.set_value(["LLaVA-1.5-7B (paper) · MMBench"]).run()
    assert not zoo.exception and len(zoo.get("plotly_chart")) == 1


@pytest.mark.parametrize("page", PAGES)
def test_a_missing_database_is_explained(page, tmp_path):
    app = _open(page, db=tmp_path / "missing.duckdb")
    assert any(markdown_text(NOT_AVAILABLE) in info.value for info in app.info)


@pytest.mark.parametrize("page", PAGES[1:])
def test_a_database_without_rows_is_explained(page, tmp_path):
    db = tmp_path / "empty.duckdb"
    ensure_schema(db)
    app = _open(page, db=db)
    assert app.warning or app.info


def test_a_file_that_is_not_a_results_database_is_explained(tmp_path):
    db = tmp_path / "other.duckdb"
    duckdb.connect(str(db)).close()
    app = _open("pages/breadth.py", db=db)
    assert any(markdown_text("has no `atoms` view; is it a results database?") in info.value for info in app.info)


def _stored_layers(db, model, layers, n_layers=4):
    """A run of `model` on synergy registered with `n_layers` and atoms at `layers` only, as a `profile` still
    estimating it leaves it (it writes the output layer, n_layers, last)."""
    from pidcore.atoms import Atoms
    from pidcore.store import register_run, write_layer

    register_run(db, run_id=model, model=model, family="llava", task="synergy", checkpoint="final", step=None,
                 stage=None, n_layers=n_layers, settings={})
    for layer in layers:
        write_layer(db, run_id=model, layer=layer, estimator="batch-published", atoms=Atoms(0.1, 0.02, 0.2, 0.05),
                    n_samples=60, accuracy=0.5, diagnostics={}, fitted=None, pointwise={}, sample_ids=[])


def test_the_breadth_page_says_which_runs_still_wait_for_their_output_layer(results_folder):
    import json

    db = results_folder / "running.duckdb"
    _stored_layers(db, "llava-b", [0, 1])
    alone = _open("pages/breadth.py", db)
    assert not alone.get("plotly_chart") and not alone.dataframe
    (waiting, nothing) = [info.value for info in alone.info]
    assert markdown_text("llava-b") in waiting and "layers 0-1 stored, not yet its output layer 4" in waiting
    assert nothing.startswith("No run in this database has its output layer stored")
    _stored_layers(db, "llava-a", range(5))
    beside = _open("pages/breadth.py", db)
    assert [info.value for info in beside.info] == [waiting]
    heatmap = json.loads(beside.get("plotly_chart")[0].proto.spec)
    assert heatmap["layout"]["yaxis"]["ticktext"] == ["llava-a"]
