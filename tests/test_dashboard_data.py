"""The dashboard's cached reads: a widget change reads nothing from the database again, a view decodes letter masses
only for the runs it shows, and rows written meanwhile (a `profile` still running) appear at the next rerun."""

import json
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from pidcore import store
from pidcore.atoms import Atoms
from pidcore.dashboard.data import version
from pidcore.dashboard.text import markdown_text
from pidcore.store import SampleRow, register_run, write_layer, write_samples

pytestmark = pytest.mark.usefixtures("results_folder")

APP = str(Path(__file__).resolve().parent.parent / "app.py")
DIAGNOSTICS = {"marginal_gap_x1": 0.01, "marginal_gap_x2": 0.02, "sinkhorn_residual": 1e-8,
               "sinkhorn_converged": True, "mode": "published"}


def write_run(db: Path, model: str, task: str, n_layers: int = 3, letter_mass: float = 0.9) -> str:
    """A run of `n_layers` decoder layers with atoms at every layer and 60 samples, as `profile` writes them."""
    run_id = f"{model}-{task}"
    register_run(db, run_id=run_id, model=model, family="llava", task=task, checkpoint="final", step=None, stage=None,
                 n_layers=n_layers, settings={})
    probs = np.full((3, n_layers + 1, 2), 0.5, dtype=np.float32)
    write_samples(db, [SampleRow(run_id, f"q{i}", i, 0, np.zeros(4, np.float32), np.zeros(4, np.float32), probs,
                                 np.full(3, letter_mass, np.float32)) for i in range(60)])
    for layer in range(n_layers + 1):
        bounds = {"r": (0.1 * layer - 0.02, 0.1 * layer + 0.03), "u1": (-0.05, 0.01), "u2": (0.15, 0.25),
                  "s": (0.05 * layer - 0.01, 0.05 * layer + 0.01)}
        write_layer(db, run_id=run_id, layer=layer, estimator="batch-published",
                    atoms=Atoms(0.1 * layer, -0.02, 0.2, 0.05 * layer, bounds=bounds), n_samples=60, accuracy=0.5,
                    diagnostics=DIAGNOSTICS, fitted=None, pointwise={}, sample_ids=[])
    return run_id


@pytest.fixture
def reads(monkeypatch):
    """Count the store reads the dashboard makes, starting from empty caches."""
    st.cache_resource.clear()
    calls = {"read_atoms": [], "read_diagnostics": [], "read_letter_mass": []}
    for name, log in calls.items():
        original = getattr(store, name)

        def counting(*args, _original=original, _log=log):
            _log.append(args[1:])
            return _original(*args)

        monkeypatch.setattr(store, name, counting)
    yield calls
    st.cache_resource.clear()


def _layers_page(db: Path, model: str, task: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=90)
    app.switch_page("pages/depth.py")
    app.query_params.update({"db": str(db), "model": model, "task": task})
    app.run()
    assert not app.exception, [error.value for error in app.exception]
    return app


def test_slider_steps_read_nothing_again_and_decode_only_the_run_shown(tmp_path, reads):
    db = tmp_path / "results.duckdb"
    shown = write_run(db, "llava-a", "synergy")
    write_run(db, "llava-b", "synergy")
    app = _layers_page(db, "llava-a", "synergy")
    first = {name: len(log) for name, log in reads.items()}
    assert first == {"read_atoms": 1, "read_diagnostics": 1, "read_letter_mass": 1}
    assert reads["read_letter_mass"][0] == ([shown],)
    for layer in (2, 1, 0):
        app.select_slider(key="layer").set_value(layer).run()
        assert [metric.value for metric in app.metric][0] == f"{0.1 * layer:+.3f}"
    assert {name: len(log) for name, log in reads.items()} == first


def test_rows_written_meanwhile_appear_at_the_next_rerun(tmp_path, reads):
    db = tmp_path / "results.duckdb"
    write_run(db, "llava-a", "synergy")
    before = version(str(db))
    app = _layers_page(db, "llava-a", "synergy")
    assert app.selectbox(key="model").options == ["llava-a"]
    write_run(db, "llava-c", "vision", n_layers=5)
    assert version(str(db)) != before
    app.select_slider(key="layer").set_value(1).run()
    assert app.selectbox(key="model").options == ["llava-a", "llava-c"]
    assert len(reads["read_atoms"]) == 2


def test_a_flag_follows_the_letter_mass_of_the_run_shown(tmp_path, reads):
    db = tmp_path / "results.duckdb"
    write_run(db, "llava-a", "synergy", letter_mass=0.1)
    app = _layers_page(db, "llava-a", "synergy")
    assert any("letter mass 0.10" in warning.value for warning in app.warning)


def test_an_unreadable_database_is_explained_not_a_traceback(tmp_path, reads, monkeypatch):
    db = tmp_path / "results.duckdb"
    write_run(db, "llava-a", "synergy")

    def locked(*args):
        raise store.StoreError(f"could not open {db} read-only: locked")

    monkeypatch.setattr(store, "read_letter_mass", locked)
    app = AppTest.from_file(APP, default_timeout=90)
    app.switch_page("pages/depth.py")
    app.query_params["db"] = str(db)
    app.run()
    assert not app.exception
    assert [info.value for info in app.info] == [
        f"{markdown_text(f'could not open {db} read-only: locked')}. Reload the page in a moment."]


def test_version_is_empty_for_a_missing_file(tmp_path):
    assert version(str(tmp_path / "none.duckdb")) == ()


def test_pages_show_the_intervals_and_clip_at_0_only_when_asked(tmp_path, reads):
    db = tmp_path / "results.duckdb"
    write_run(db, "llava-a", "synergy")
    app = _layers_page(db, "llava-a", "synergy")
    assert [metric.value for metric in app.metric] == ["+0.300", "-0.020", "+0.200", "+0.150"]
    assert "95% interval [+0.280, +0.330]" in [caption.value for caption in app.caption]
    error_bars = json.loads(app.get("plotly_chart")[0].proto.spec)["data"][0]["error_y"]
    assert error_bars.get("visible", True) and error_bars["symmetric"] is False
    app.toggle(key="clip").set_value(True).run()
    assert [metric.value for metric in app.metric] == ["+0.300", "+0.000", "+0.200", "+0.150"]
    assert "95% interval [+0.000, +0.010]" in [caption.value for caption in app.caption]
    heatmap = AppTest.from_file(APP, default_timeout=90)
    heatmap.switch_page("pages/breadth.py")
    heatmap.query_params["db"] = str(db)
    heatmap.run()
    cells = json.loads(heatmap.get("plotly_chart")[0].proto.spec)["data"][0]["text"]
    assert cells == [["0.15<br>[0.14, 0.16]<br>acc 0.50"]]
