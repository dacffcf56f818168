"""The home page and the read-only store access it relies on, on a database written through the real schema."""

import sys
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from pidcore import cli, shipped
from pidcore.atoms import Atoms
from pidcore.cli import dashboard_launch
from pidcore.dashboard.data import NOT_AVAILABLE
from pidcore.dashboard.arguments import STARTED_REFUSED
from pidcore.dashboard.sidebar import OTHER_FILE, STARTED
from pidcore.dashboard.text import markdown_text
from pidcore.shipped import STARTED_DB_ENV, results_dirs
from pidcore.store import StoreError, read_atoms, register_run, write_layer
from tests.cli_run import run_cli

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


# ---- issue 28, item 5: open results written into another folder ----


class Started(Exception):
    """Raised instead of starting a server, so a test of `pidcore dashboard` stops where it would exec."""


def _no_server(monkeypatch) -> list[tuple]:
    """Replace starting Streamlit (exec on POSIX, a subprocess elsewhere) by recording the call and raising Started."""
    calls = []

    def start(*args, **kwargs):
        calls.append((args, kwargs))
        raise Started

    monkeypatch.setattr(cli.os, "execve", start)
    monkeypatch.setattr(cli.subprocess, "call", start)
    return calls


def test_the_launch_passes_a_checked_db_to_the_app_and_other_options_to_streamlit(tmp_path_factory):
    db = tmp_path_factory.mktemp("elsewhere") / "mine.duckdb"
    write_one_run(db)
    command, env = dashboard_launch(str(db), ["--server.port", "8502"], {"KEEP": "1"})
    assert command[1:] == ["-m", "streamlit", "run", str(shipped.APP), "--server.port", "8502"]
    assert env == {"KEEP": "1", STARTED_DB_ENV: str(db.resolve())}
    assert db.parent.resolve() in results_dirs(env)
    assert dashboard_launch(None, [], {"KEEP": "1"})[1] == {"KEEP": "1"}


def test_pidcore_dashboard_db_starts_streamlit_on_that_file_and_says_which_folders_it_reads(tmp_path_factory,
                                                                                           monkeypatch, capsys):
    db = tmp_path_factory.mktemp("elsewhere") / "mine.duckdb"
    write_one_run(db)
    calls = _no_server(monkeypatch)
    with pytest.raises(Started):
        cli.main(["dashboard", "--db", str(db), "--server.headless", "true"])
    (args, kwargs), = calls
    command, env = (args[1], args[2]) if args[0] == sys.executable else (args[0], kwargs["env"])
    assert command[-3:] == [str(shipped.APP), "--server.headless", "true"]
    assert env[STARTED_DB_ENV] == str(db.resolve())
    told = capsys.readouterr().err
    assert "opens .duckdb results files under" in told and str(db.parent.resolve()) in told


def test_pidcore_dashboard_refuses_a_db_that_is_no_results_file_without_starting_streamlit(tmp_path, monkeypatch):
    calls = _no_server(monkeypatch)
    (tmp_path / "notes.txt").write_text("x")
    for path, why in ((tmp_path / "missing.duckdb", "no such file"), (tmp_path, "not a file"),
                      (tmp_path / "notes.txt", ".duckdb files only")):
        done = run_cli("dashboard", "--db", str(path))
        assert done.returncode == 2 and why in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert calls == []


def test_a_file_in_another_folder_opens_when_the_dashboard_is_started_on_it(tmp_path_factory, monkeypatch):
    db = tmp_path_factory.mktemp("elsewhere") / "mine.duckdb"
    write_one_run(db)
    write_one_run(db, model="tiny-qwen", s=0.25)
    monkeypatch.setenv(STARTED_DB_ENV, dashboard_launch(str(db), [], {})[1][STARTED_DB_ENV])
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    assert not app.exception
    assert app.sidebar.selectbox(key="source").value == STARTED
    assert [metric.value for metric in app.metric] == ["2", "1", "2"]


def test_streamlit_run_app_py_with_db_opens_that_file_and_reports_a_bad_one(tmp_path_factory, monkeypatch):
    db = tmp_path_factory.mktemp("elsewhere") / "mine.duckdb"
    write_one_run(db)
    monkeypatch.setenv(STARTED_DB_ENV, "")  # the app sets it; the test's end restores it
    monkeypatch.setattr(sys, "argv", ["app.py", "--db", str(db)])
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    assert not app.exception and not app.error
    assert app.sidebar.selectbox(key="source").value == STARTED
    assert [metric.value for metric in app.metric] == ["1", "1", "1"]
    monkeypatch.setenv(STARTED_DB_ENV, "")
    monkeypatch.setattr(sys, "argv", ["app.py", "--db", str(db.parent / "missing.duckdb")])
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    assert not app.exception
    assert [error.value for error in app.error] == [STARTED_REFUSED]
    assert STARTED not in app.sidebar.selectbox(key="source").options
