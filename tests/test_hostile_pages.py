"""Every dashboard page against hostile results databases, run by Streamlit's AppTest: a crafted view that reads
another file, links to files outside the results folders, names that are Markdown or HTML, a run still being
estimated, a link asking for a layer a run lacks, a truncated file, garbage diagnostics, a broken view, a file that
is no results database, NULL atoms and names, and a stepless final checkpoint. Each page says what it cannot show,
and shows the rest: never a traceback, never another file's contents.

The hostile files are crafted through the store's own writers and DuckDB's relational API (read_csv, create,
create_view, insert), so no SQL text sits outside pidcore/store."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from pidcore.atoms import BOUND_COLUMNS, Atoms
from pidcore.dashboard import rows as dashboard_rows
from pidcore.dashboard.data import NOT_AVAILABLE
from pidcore.dashboard.sidebar import HOW_TO_FILL
from pidcore.dashboard.text import WORD_JOINER
from pidcore.store import SampleRow, register_run, write_layer, write_samples
from pidcore.store.schema import LAYER_ATOMS
from tests.app_pages import open_page

pytestmark = pytest.mark.usefixtures("results_folder")

PAGES = ["pages/overview.py", "pages/breadth.py", "pages/depth.py", "pages/timeline.py"]
DIAGNOSTICS = {"marginal_gap_x1": 0.01, "marginal_gap_x2": 0.02, "sinkhorn_residual": 1e-8,
               "sinkhorn_converged": True, "mode": "published"}
SECRET = "root:x:0:0:the-secret-line"
MESSAGES = ("info", "warning", "error")
# Elements whose text Streamlit renders as Markdown.
MARKDOWN = ("markdown", "caption", "info", "warning", "error", "title", "header", "subheader")


def write_run(db: Path, model: str | None, task: str | None, layers: list[int], n_layers: int = 4,
              checkpoint: str | None = "final", step: int | None = None, stage: str | None = None,
              atoms: Atoms | None = None, run_id: str | None = None) -> str:
    """A run with atoms at the given layers and 60 samples, written the way `profile` writes (a None name: NULL)."""
    run_id = run_id or f"{model}-{task}-{checkpoint}"
    register_run(db, run_id=run_id, model=model, family="llava", task=task, checkpoint=checkpoint, step=step,
                 stage=stage, n_layers=n_layers, settings={})
    probs = np.full((3, n_layers + 1, 2), 0.5, dtype=np.float32)
    write_samples(db, [SampleRow(run_id, f"q{i}", i, 0, np.zeros(4, np.float32), np.zeros(4, np.float32), probs,
                                 np.full((3, n_layers + 1), 0.9, np.float32)) for i in range(60)])
    for layer in layers:
        write_layer(db, run_id=run_id, layer=layer, estimator="batch-published",
                    atoms=atoms or Atoms(0.1 * layer, 0.02, 0.2, 0.05 * layer), n_samples=60, accuracy=0.5,
                    diagnostics=DIAGNOSTICS, fitted=None, pointwise={}, sample_ids=[])
    return run_id


def csv_view(folder: Path) -> Path:
    """A database whose `atoms` view is read_csv of another file on the machine (here one the test writes)."""
    other = folder / "passwd.csv"
    other.write_text(f"model,task,estimator,checkpoint,layer,n_layers,r,u1,u2,s\n{SECRET},t,batch-published,"
                     "final,4,4,0.1,0.1,0.1,0.1\n")
    db = folder / "csv_view.duckdb"
    with duckdb.connect(str(db)) as connection:
        connection.read_csv(str(other)).create_view("atoms")
    return db


def truncated(folder: Path) -> Path:
    """A real results database cut to half its bytes (a copy interrupted, a disk filled)."""
    db = folder / "truncated.duckdb"
    write_run(db, "llava-a", "synergy", list(range(5)))
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    return db


def garbage_diagnostics(folder: Path) -> Path:
    """A run whose every layer's diagnostics are not JSON."""
    db = folder / "garbage.duckdb"
    run_id = write_run(db, "llava-a", "synergy", [])
    with duckdb.connect(str(db)) as connection:
        table = connection.table(LAYER_ATOMS.name)
        for layer in range(5):
            row = {"run_id": run_id, "layer": layer, "estimator": "batch-published",
                   **Atoms(0.1 * layer, 0.02, 0.2, 0.05 * layer).as_dict(), **dict.fromkeys(BOUND_COLUMNS),
                   "n_samples": 60, "accuracy": 0.5, "diagnostics": "{not json", "fitted": None}
            table.insert([row[name] for name in LAYER_ATOMS.column_names])
    return db


def broken_view(folder: Path) -> Path:
    """A database whose `atoms` view names a column that the view it reads no longer has."""
    db = folder / "broken_view.duckdb"
    with duckdb.connect(str(db)) as connection:
        connection.values(["llava-a"]).project("col0 AS model").create("first_table")
        connection.values([1]).project("col0 AS other").create("second_table")
        connection.table("first_table").create_view("inner_view")
        connection.table("inner_view").project("model").create_view("atoms")
        connection.table("second_table").create_view("inner_view", replace=True)
    return db


def not_duckdb(folder: Path) -> Path:
    """A file named like a database that holds something else."""
    db = folder / "not_duckdb.duckdb"
    db.write_bytes(b"this is not a DuckDB database\n" * 200)
    return db


def foreign(folder: Path) -> Path:
    """A DuckDB database of something else: one unrelated table, no `atoms` view."""
    db = folder / "foreign.duckdb"
    with duckdb.connect(str(db)) as connection:
        connection.values(["a", 1]).create("inventory")
    return db


def half_written(folder: Path) -> Path:
    """One finished run and one still being estimated (layers 0 and 1 of 0-4 stored, the output not yet)."""
    db = folder / "half_written.duckdb"
    write_run(db, "llava-a", "synergy", list(range(5)))
    write_run(db, "llava-b", "synergy", [0, 1])
    return db


def null_atoms(folder: Path) -> Path:
    """A run whose atoms are NULL (a figure shows none) or NaN at every layer."""
    db = folder / "null_atoms.duckdb"
    write_run(db, "llava-a", "synergy", list(range(5)), atoms=Atoms(float("nan"), None, 0.2, float("nan")))
    return db


def null_names(folder: Path) -> Path:
    """Runs without a model, task or checkpoint name (NULL), beside a named one."""
    db = folder / "null_names.duckdb"
    write_run(db, "llava-a", "synergy", list(range(5)))
    write_run(db, None, "synergy", list(range(5)))
    write_run(db, "llava-c", None, list(range(5)), checkpoint=None)
    return db


def stepless_final(folder: Path) -> Path:
    """Training checkpoints of two stages plus a released "final" checkpoint without a step."""
    db = folder / "stepless_final.duckdb"
    write_run(db, "llava-a", "synergy", [4], checkpoint="stage1-step10", step=10, stage="1")
    write_run(db, "llava-a", "synergy", [4], checkpoint="stage2-step20", step=20, stage="2")
    write_run(db, "llava-a", "synergy", [4], checkpoint="final", stage="2")
    return db


_open = open_page


def _shown(markdown: str) -> str:
    """What a reader sees of Markdown text whose punctuation is backslash-escaped and autolinks broken up."""
    return re.sub(r"\\(.)", r"\1", markdown).replace(WORD_JOINER, "")


def _messages(app: AppTest) -> list[str]:
    """The page's info, warning and error boxes, as read."""
    return [_shown(element.value) for kind in MESSAGES for element in app.get(kind)]


def _everything(app: AppTest) -> str:
    """All the text a page shows: Markdown elements, metrics, tables, charts and widget options."""
    parts = [str(element.value) for kind in (*MARKDOWN, "metric") for element in app.get(kind)]
    parts += [element.value.to_csv() for element in app.dataframe]
    parts += [json.dumps(json.loads(element.proto.spec)) for element in app.get("plotly_chart")]
    parts += [" ".join(map(str, widget.options)) for kind in ("selectbox", "multiselect", "select_slider")
              for widget in app.get(kind)]
    return "\n".join(parts)


def test_a_view_that_reads_another_file_shows_a_message_and_none_of_the_file(results_folder):
    app = _open("pages/overview.py", csv_view(results_folder))
    assert SECRET not in _everything(app) and "the-secret-line" not in _everything(app)
    assert any("has a view that reads other files" in message for message in _messages(app))


def test_a_path_outside_the_results_folders_and_a_missing_file_get_the_same_message(results_folder,
                                                                                     tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "results.duckdb"
    write_run(elsewhere, "llava-outside", "synergy", list(range(5)))
    (results_folder / "link.duckdb").symlink_to(elsewhere)
    paths = [elsewhere, results_folder / "link.duckdb", results_folder / ".." / elsewhere.parent.name / elsewhere.name,
             results_folder / "missing.duckdb", "/etc/passwd"]
    for page in ("pages/overview.py", "pages/breadth.py"):
        shown = [_open(page, path) for path in paths]
        assert {tuple(_messages(app)) for app in shown} == {(f"{NOT_AVAILABLE}. {HOW_TO_FILL}",)}
        assert not any("llava-outside" in _everything(app) for app in shown)


def test_names_that_are_markdown_or_html_are_shown_as_text(results_folder):
    db = results_folder / "names.duckdb"
    model, task = "<b>x</b>", "[click](http://evil)"
    write_run(db, model, task, list(range(5)))
    depth = _open("pages/depth.py", db)
    breadth = _open("pages/breadth.py", db)
    for app in (depth, breadth):
        rendered = [element.value for kind in MARKDOWN for element in app.get(kind)]
        assert not any(model in text or task in text for text in rendered)
    assert any(f"({model} on {task})" in _shown(markdown.value) for markdown in depth.markdown)
    figures = [json.loads(chart.proto.spec) for chart in breadth.get("plotly_chart")]
    axes = figures[0]["layout"]
    assert (axes["yaxis"]["ticktext"], axes["xaxis"]["ticktext"]) == (["&lt;b&gt;x&lt;/b&gt;"], [task])
    assert model not in json.dumps(figures)


def test_the_depth_page_shows_a_run_still_being_estimated_and_says_so(results_folder):
    app = _open("pages/depth.py", half_written(results_folder), model="llava-b", task="synergy")
    assert app.select_slider(key="layer").options == ["0", "1"]
    assert [metric.value for metric in app.metric] == ["+0.100", "+0.020", "+0.200", "+0.050"]
    assert any("Layers 0-1 of this run are stored so far, not yet its output layer 4" in message
               for message in _messages(app))


def test_a_rerun_still_being_estimated_shows_its_own_layers_once(results_folder):
    db = results_folder / "rerun.duckdb"
    write_run(db, "llava-a", "synergy", list(range(5)), run_id="earlier")
    write_run(db, "llava-a", "synergy", [0, 1], run_id="rerun", atoms=Atoms(0.3, 0.02, 0.2, 0.1))
    app = _open("pages/depth.py", db, model="llava-a", task="synergy")
    assert app.select_slider(key="layer").options == ["0", "1"]
    assert [metric.value for metric in app.metric] == ["+0.300", "+0.020", "+0.200", "+0.100"]
    assert any("not yet its output layer 4" in message for message in _messages(app))


def test_a_link_asking_for_a_layer_or_run_that_is_not_stored_says_what_is_shown_instead(results_folder):
    db = results_folder / "layers.duckdb"
    write_run(db, "llava-a", "synergy", [1, 2, 3, 4])
    write_run(db, "llava-one", "synergy", [4])
    app = _open("pages/depth.py", db, model="llava-a", task="synergy", layer="0")
    assert app.select_slider(key="layer").value == 4
    assert "The link asks for layer 0, but this run stores layers 1-4 only; showing layer 4." in _messages(app)
    one = _open("pages/depth.py", db, model="llava-one", task="synergy", layer="0")
    assert ("The link asks for model llava-one, but it has no run with atoms at two or more layers here; showing "
            "model llava-a.") in _messages(one)


def test_a_truncated_database_is_explained(results_folder):
    app = _open("pages/overview.py", truncated(results_folder))
    assert any("is damaged (cut short, or not completely written)" in message for message in _messages(app))


def test_garbage_diagnostics_leave_the_atoms_and_flag_the_rows(results_folder):
    app = _open("pages/depth.py", garbage_diagnostics(results_folder), model="llava-a", task="synergy")
    assert [metric.value for metric in app.metric] == ["+0.400", "+0.020", "+0.200", "+0.200"]
    assert "Poor diagnostics for this row: no diagnostics" in _messages(app)


def test_a_broken_view_is_explained(results_folder):
    app = _open("pages/overview.py", broken_view(results_folder))
    assert any("has a table or view that cannot be read" in message for message in _messages(app))


def test_the_time_page_names_a_final_checkpoint_without_a_step(results_folder, monkeypatch):
    """Whichever rule puts a stepless "final" checkpoint on a trajectory (here: any checkpoint with a stage), the
    scrubber names it instead of failing on its missing step."""
    monkeypatch.setattr(dashboard_rows, "training_checkpoints",
                        lambda rows: rows[rows["stage"].notna()].sort_values("step", na_position="last"))
    app = _open("pages/timeline.py", stepless_final(results_folder), train_model="llava-a", train_task="synergy")
    slider = app.select_slider(key="train_checkpoint")
    assert slider.options == ["stage 1 · step 10", "stage 2 · step 20", "stage 2 · final"]
    assert slider.value == "final" and len(app.get("plotly_chart")) == 1


# What each page says on each hostile database: a fragment of one of its messages, or None where the page has
# nothing to say about it (what it shows is complete: the overview never reads diagnostics, a NULL atom is "n/a").
UNREADABLE = {"csv_view": "has a view that reads other files", "truncated": "is damaged",
              "broken_view": "has a table or view that cannot be read", "not_duckdb": "is not a DuckDB database",
              "foreign": "has no `atoms` view"}
CONTENT = {
    "garbage_diagnostics": (None, "rows shown have poor diagnostics", "no diagnostics", "No model in this database"),
    "half_written": (None, None, None, "No model in this database"),
    "null_atoms": (None, None, "n/a: not stored", "No model in this database"),
    "null_names": (None, None, None, "No model in this database"),
    "stepless_final": (None, None, "No run in this database has atoms at more than one layer", None),
}
HOSTILE: dict[str, Callable[[Path], Path]] = {
    "csv_view": csv_view, "truncated": truncated, "broken_view": broken_view, "not_duckdb": not_duckdb,
    "foreign": foreign, "garbage_diagnostics": garbage_diagnostics, "half_written": half_written,
    "null_atoms": null_atoms, "null_names": null_names, "stepless_final": stepless_final}
EXPECTED = {(name, page): message for name, message in UNREADABLE.items() for page in PAGES}
EXPECTED.update({(name, page): message for name, messages in CONTENT.items() for page, message in zip(PAGES, messages)})


@pytest.mark.parametrize("name", list(HOSTILE))
def test_every_page_on_every_hostile_database_ends_in_a_message_not_a_traceback(name, results_folder):
    db = HOSTILE[name](results_folder)
    for page in PAGES:
        app = _open(page, db)
        assert app.title, page
        expected = EXPECTED[name, page]
        if expected is not None:
            assert any(expected in message for message in _messages(app)), (page, _messages(app))


# Markdown (a link, a remote image), HTML (a link, a remote image) and KaTeX, planted in stored names.
PLANTED = ('<a href="https://evil.example/x">A</a>[L](https://evil.example/l)![I](https://evil.example/i.png)'
           '<img src="https://evil.example/j.png">$x^2$')
# What would be live: Markdown link or image syntax, an HTML tag or KaTeX delimiter not escaped by a backslash.
LIVE_MARKDOWN = re.compile(r"(?<!\\)[\[\]()!<>$]")


def planted_stages(folder: Path) -> Path:
    """Two training checkpoints and a stepless "final", their stage and checkpoint names all holding PLANTED."""
    db = folder / "planted_stages.duckdb"
    write_run(db, "llava-a", "synergy", [4], checkpoint=f"C100{PLANTED}", step=100, stage=f"S1{PLANTED}")
    write_run(db, "llava-a", "synergy", [4], checkpoint=f"C5000{PLANTED}", step=5000, stage=f"S2{PLANTED}")
    write_run(db, "llava-a", "synergy", [4], checkpoint=f"F{PLANTED}", stage=f"S2{PLANTED}")
    return db


def _with_final(monkeypatch) -> None:
    """Put the stepless "final" on the trajectory too, so its (planted) checkpoint name labels a slider option."""
    monkeypatch.setattr(dashboard_rows, "training_checkpoints",
                        lambda rows: rows[rows["stage"].notna()].sort_values("step", na_position="last"))


def test_planted_stage_and_checkpoint_names_label_the_time_slider_as_text(results_folder, monkeypatch):
    _with_final(monkeypatch)
    db = planted_stages(results_folder)
    app = _open("pages/timeline.py", db, train_model="llava-a", train_task="synergy")
    slider = app.select_slider(key="train_checkpoint")
    plain = [f"stage S1{PLANTED} · step 100", f"stage S2{PLANTED} · step 5000", f"stage S2{PLANTED} · F{PLANTED}"]
    assert [_shown(option) for option in slider.options] == plain
    assert not [option for option in slider.options if LIVE_MARKDOWN.search(option)]
    assert slider.value == f"F{PLANTED}"
    # A link to a checkpoint (the slider writes its option into the URL) opens it, without a word.
    linked = _open("pages/timeline.py", db, train_model="llava-a", train_task="synergy",
                   train_checkpoint=slider.options[0])
    assert linked.select_slider(key="train_checkpoint").value == f"C100{PLANTED}"
    assert not any("The link asks" in message for message in _messages(linked))


def test_planted_stage_names_are_text_in_the_time_chart_and_its_report(results_folder):
    import html

    import pandas as pd
    import plotly.graph_objects as go

    from pidcore.dashboard.report import report_html

    app = _open("pages/timeline.py", planted_stages(results_folder), train_model="llava-a", train_task="synergy")
    spec = json.loads(app.get("plotly_chart")[0].proto.spec)
    notes = [note["text"] for note in spec["layout"]["annotations"]]
    assert notes == [f"stage S2{html.escape(PLANTED, quote=False)} begins"]
    assert not any(raw in json.dumps(spec) for raw in ("<a href", "<img"))
    names = pd.DataFrame({"checkpoint": [f"C100{PLANTED}", f"C5000{PLANTED}"], "stage": [f"S1{PLANTED}",
                                                                                        f"S2{PLANTED}"]})
    report = report_html(f"Time: llava-a on synergy ({PLANTED})", "http://localhost:8501/training",
                         [go.Figure(spec)], names, [], [f"stage S2{PLANTED} begins"], names)
    assert '"stage S2&lt;a href=\\"https:\\u002f\\u002fevil.example' in report  # the note, as text
    for raw in ('<a href="https://evil', '<img src="https://evil', "\\u003ca href", "\\u003cimg"):
        assert raw not in report


# Round 2 of the hostile databases (issue 26): NULL sample counts (N22), `atoms` view columns of another type (N23),
# JSON nested deeper than Python's stack (N24), a ?db= name longer than a file name may be (N27).
ALL_PAGES = [*PAGES, "pages/case_study.py"]


def test_a_null_sample_count_flags_its_rows_aloud_on_every_page(results_folder):
    db = results_folder / "null_count.duckdb"
    write_run(db, "llava-a", "synergy", list(range(5)))
    with duckdb.connect(str(db)) as connection:
        connection.table(LAYER_ATOMS.name).update({"n_samples": duckdb.ConstantExpression(None)})
    shown = {page: _open(page, db, model="llava-a", task="synergy") for page in ALL_PAGES}
    assert "Poor diagnostics for this row: held-out sample count not stored" in _messages(shown["pages/depth.py"])
    assert any("rows shown have poor diagnostics" in message for message in _messages(shown["pages/breadth.py"]))


def _retyped_view(db: Path, kinds: dict) -> Path:
    """The database's `atoms` view replaced by one over a table of its rows with these columns of other types."""
    from pidcore.store.schema import ATOM_COLUMNS

    columns = [duckdb.ColumnExpression(name).cast(kinds[name]).alias(name) if name in kinds
               else duckdb.ColumnExpression(name) for name in ATOM_COLUMNS]
    with duckdb.connect(str(db)) as connection:
        connection.view("atoms").select(*columns).create("retyped")
        connection.table("retyped").create_view("atoms", replace=True)
    return db


def test_atoms_view_columns_of_another_type_are_read_or_named_on_every_page(results_folder):
    numbers = results_folder / "other_numbers.duckdb"
    write_run(numbers, "llava-a", "synergy", list(range(5)))
    types = duckdb.sqltypes
    _retyped_view(numbers, {"layer": types.DOUBLE, "n_layers": types.BIGINT, "step": types.INTEGER,
                            "r": duckdb.decimal_type(10, 3), "n_samples": types.HUGEINT, "accuracy": types.FLOAT,
                            "stage": types.INTEGER})
    depth = _open("pages/depth.py", numbers, model="llava-a", task="synergy")
    assert [metric.value for metric in depth.metric] == ["+0.400", "+0.020", "+0.200", "+0.200"]
    texts = results_folder / "text_layers.duckdb"
    write_run(texts, "llava-a", "synergy", list(range(5)))
    _retyped_view(texts, {"layer": types.VARCHAR, "r": types.VARCHAR})
    for page in ALL_PAGES:
        _open(page, numbers, model="llava-a", task="synergy")
        app = _open(page, texts, model="llava-a", task="synergy")
        if page != "pages/case_study.py":
            assert any("view whose column layer holds VARCHAR, not numbers" in message for message in _messages(app))


def test_json_nested_too_deep_reads_as_no_diagnostics_on_every_page(results_folder):
    db = results_folder / "deep_json.duckdb"
    write_run(db, "llava-a", "synergy", list(range(5)))
    deep = "[" * 100_000 + "]" * 100_000
    with duckdb.connect(str(db)) as connection:
        connection.table(LAYER_ATOMS.name).update({"diagnostics": duckdb.ConstantExpression(deep)})
        connection.table("runs").update({"settings": duckdb.ConstantExpression(deep)})
        connection.table("samples").update({"options": duckdb.ConstantExpression(deep)})
    for page in ALL_PAGES:
        app = _open(page, db, model="llava-a", task="synergy")
        if page == "pages/depth.py":
            assert "Poor diagnostics for this row: no diagnostics" in _messages(app)


def test_a_link_naming_a_file_longer_than_a_file_name_may_be_gets_the_one_message(results_folder):
    for name in ("x" * 300 + ".duckdb", "a/" * 3000 + "r.duckdb"):
        for page in ALL_PAGES:
            app = _open(page, results_folder / name)
            if page != "pages/case_study.py":
                assert _messages(app) == [f"{NOT_AVAILABLE}. {HOW_TO_FILL}"]


# ---- issue 26: a slow or hostile database (N28, N29) ----
# A read has a time and a memory limit (set small here), and a view that reaches DuckDB's own state (settings,
# catalog, the database's path) is refused by DuckDB's plan of it, whatever its spelling.
TOO_LONG, TOO_MUCH_MEMORY, SYSTEM_CALLS = "took too long to read", "needed too much memory", "system functions"


@pytest.fixture
def small_read_limits(monkeypatch):
    """Reads give up after 0.3 s and past 100 MB, so a runaway database fails fast."""
    from pidcore.store.read import READ_ONLY_CONFIG

    monkeypatch.setitem(READ_ONLY_CONFIG, "max_execution_time", 300)
    monkeypatch.setitem(READ_ONLY_CONFIG, "memory_limit", "100MB")


def _numbers(connection: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
    """A stored table of the numbers 0 to 99,999 (stored: a view over range() would be refused for calling it)."""
    connection.table_function("range", [100_000]).create("numbers")
    return connection.table("numbers")


def runaway(folder: Path) -> Path:
    """A database whose `atoms` view sums over 10^10 rows (the numbers joined with themselves): as endless, for a
    page, as the issue's recursive query up to 10^10."""
    db = folder / "runaway.duckdb"
    with duckdb.connect(str(db)) as connection:
        numbers = _numbers(connection)
        numbers.set_alias("a").cross(numbers.set_alias("b")).aggregate("sum(a.range * b.range) AS layer") \
            .create_view("atoms")
    return db


def memory_hog(folder: Path) -> Path:
    """A database whose `atoms` view joins 10 kB of text per number into one model name of 1 GB."""
    db = folder / "memory_hog.duckdb"
    with duckdb.connect(str(db)) as connection:
        _numbers(connection).project("repeat('x', 10000) AS s").aggregate("string_agg(s, '') AS model") \
            .create_view("atoms")
    return db


def test_a_runaway_database_ends_in_a_message_on_every_page_within_the_limits(results_folder, small_read_limits):
    import time

    for make, message in ((runaway, TOO_LONG), (memory_hog, TOO_MUCH_MEMORY)):
        db = make(results_folder)
        for page in PAGES:
            start = time.monotonic()
            app = _open(page, db)
            assert time.monotonic() - start < 45, (page, make.__name__)
            assert any(message in shown for shown in _messages(app)), (page, _messages(app))


# The `atoms` view of a real results database replaced by one over DuckDB's own state, spelt in several ways.
F, K = duckdb.FunctionExpression, duckdb.ConstantExpression
SYSTEM_VIEWS: dict[str, Callable[[duckdb.DuckDBPyConnection], duckdb.DuckDBPyRelation]] = {
    "settings": lambda c: c.table_function("duckdb_settings").project("name AS model, value AS task"),
    "pg_settings": lambda c: c.table("pg_catalog.pg_settings").project("name AS model, setting AS task"),
    "databases": lambda c: c.table_function("duckdb_databases").project("path AS model, database_name AS task"),
    "databases_view": lambda c: c.view("duckdb_databases").project("path AS model, database_name AS task"),
    "databases_system_qualified": lambda c: c.table("system.main.duckdb_databases").project("path AS model"),
    "databases_upper_case": lambda c: c.table('"DUCKDB_DATABASES"').project("path AS model"),
    "pragma_database_list": lambda c: c.table("pragma_database_list").project("file AS model"),
    "current_setting": lambda c: c.table("runs").project(F("current_setting", K("secret_directory")).alias("model"),
                                                         F("CURRENT_SETTING", K("temp_directory")).alias("task")),
}


def system_view(folder: Path, name: str) -> Path:
    """A real results database whose `atoms` view is SYSTEM_VIEWS[name]."""
    db = folder / f"{name}.duckdb"
    write_run(db, "llava-a", "synergy", list(range(5)))
    with duckdb.connect(str(db)) as connection:
        SYSTEM_VIEWS[name](connection).create_view("atoms", replace=True)
    return db


def _leaks(app: AppTest, db: Path) -> list[str]:
    """What of the server's paths a page shows: DuckDB's home folder (its secrets, its extensions), the temporary
    folder beside the database, or the database's own path anywhere but in a message (which names it)."""
    shown = beyond_messages = _everything(app)
    for element in (element for kind in MESSAGES for element in app.get(kind)):
        beyond_messages = beyond_messages.replace(str(element.value), "")
    return [leak for leak, text in ((str(Path.home() / ".duckdb"), shown), (f"{db}.tmp", shown),
                                    (str(db), beyond_messages)) if leak in text]


@pytest.mark.parametrize("name", list(SYSTEM_VIEWS))
def test_a_view_over_duckdbs_own_state_is_refused_on_every_page(name, results_folder):
    db = system_view(results_folder, name)
    for page in PAGES:
        app = _open(page, db)
        assert any(SYSTEM_CALLS in message for message in _messages(app)), (page, _messages(app))
        assert not _leaks(app, db), page


def test_a_setting_the_binder_computes_in_advance_shows_no_real_path(results_folder):
    """map_from_entries computes its constant argument when the view is planned, so the call leaves no trace in the
    plan; the reader's neutral home folder leaves it nothing real to show."""
    db = results_folder / "computed_setting.duckdb"
    write_run(db, "llava-a", "synergy", list(range(5)))
    entries = F("list_value", F("row", K("k"), F("current_setting", K("secret_directory"))))
    with duckdb.connect(str(db)) as connection:
        connection.view("atoms").create("atom_rows")
        columns = [F("map_from_entries", entries).cast(duckdb.sqltypes.VARCHAR).alias("model"),
                   *(duckdb.ColumnExpression(name) for name in ("task", "checkpoint", "layer", "n_layers",
                                                                "estimator", "r", "u1", "u2", "s"))]
        connection.table("atom_rows").select(*columns).create_view("atoms", replace=True)
    for page in PAGES:
        app = _open(page, db)
        assert not _leaks(app, db), page
        if page != "pages/timeline.py":  # the only run has no training checkpoints to show there
            assert "/nonexistent/.duckdb/stored_secrets" in _everything(app), page


def test_a_view_nested_deeper_than_can_be_checked_ends_in_a_message(results_folder):
    db = results_folder / "deep.duckdb"
    write_run(db, "llava-a", "synergy", list(range(5)))
    with duckdb.connect(str(db)) as connection:
        connection.view("atoms").create("atom_rows")
        rows = connection.table("atom_rows")
        for depth in range(900):
            rows = rows.filter(f"n_layers > {-depth}").limit(1_000_000)
        rows.create_view("atoms", replace=True)
    app = _open("pages/overview.py", db)
    assert any("nested too deeply to check" in message for message in _messages(app)), _messages(app)


def test_a_healthy_database_reads_as_before_under_the_limits(results_folder):
    db = results_folder / "healthy.duckdb"
    write_run(db, "llava-a", "synergy", list(range(5)))
    for step, stage in ((10, "1"), (20, "2")):
        write_run(db, "llava-a", "synergy", [4], checkpoint=f"stage{stage}-step{step}", step=step, stage=stage)
    for page in PAGES:
        app = _open(page, db, model="llava-a", task="synergy")
        assert not [message for message in _messages(app)
                    if any(fragment in message for fragment in (TOO_LONG, TOO_MUCH_MEMORY, SYSTEM_CALLS))], page
        assert "llava-a" in _everything(app), page


# ---- issue 28, item 5: a dashboard started on a file in another folder (`pidcore dashboard --db PATH`) ----


def test_a_started_file_opens_its_folder_to_links_and_nothing_else(results_folder, tmp_path_factory, monkeypatch):
    """The started file's folder joins the results folders; a link to any other path, missing or outside every
    results folder, gets the one message, and that message names no folder of the server."""
    from pidcore.shipped import STARTED_DB_ENV, started_env

    mine, outside = tmp_path_factory.mktemp("mine"), tmp_path_factory.mktemp("outside")
    started, sibling, elsewhere = mine / "started.duckdb", mine / "sibling.duckdb", outside / "results.duckdb"
    write_run(started, "llava-started", "synergy", list(range(5)))
    write_run(sibling, "llava-sibling", "synergy", list(range(5)))
    write_run(elsewhere, "llava-outside", "synergy", list(range(5)))
    monkeypatch.setenv(STARTED_DB_ENV, started_env(str(started))[STARTED_DB_ENV])
    assert "llava-sibling" in _everything(_open("pages/breadth.py", sibling))
    for page in ("pages/overview.py", "pages/breadth.py"):
        shown = [_open(page, path) for path in (elsewhere, mine / "missing.duckdb", results_folder / "missing.duckdb",
                                                mine / ".." / outside.name / elsewhere.name)]
        assert {tuple(_messages(app)) for app in shown} == {(f"{NOT_AVAILABLE}. {HOW_TO_FILL}",)}
        assert not any("llava-outside" in _everything(app) for app in shown)
        for folder in (mine, outside, results_folder, Path.cwd()):
            assert not any(str(folder) in message for app in shown for message in _messages(app))
