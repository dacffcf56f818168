"""The depth page on a run with rows of both estimator families (BATCH and the Gaussian PID on hidden states): it
offers the other family's curve beside the chosen one, draws it named with its estimator, and says under the chart
that the two measure different things and how far they agree."""

import json

import pytest

from pidcore.atoms import Atoms
from pidcore.shipped import DEFAULT_DB
from pidcore.store import register_run, write_layer
from tests.app_pages import open_page

pytestmark = pytest.mark.usefixtures("results_folder")

N_LAYERS = 4
GAUSSIAN_DIAGNOSTICS = {"components": 16, "gaussianised": True, "target": "letter log-ratios"}


@pytest.fixture
def db(tmp_path):
    """One run with batch-published and gaussian rows at every layer: S of one shape, U2 opposite."""
    path = tmp_path / "families.duckdb"
    register_run(path, run_id="run", model="llava-g", family="llava", task="synergy", checkpoint="final", step=None,
                 stage=None, n_layers=N_LAYERS, settings={})
    for layer in range(N_LAYERS + 1):
        for estimator, atoms in (("batch-published", Atoms(0.1, 0.05, 0.05 * layer, 0.02 * layer)),
                                 ("gaussian", Atoms(0.2, 0.0, 0.5 - 0.1 * layer, 0.01 * layer))):
            informations = {"i1": atoms.i1, "i2": atoms.i2, "i12": atoms.i12}
            write_layer(path, run_id="run", layer=layer, estimator=estimator, atoms=atoms, n_samples=60,
                        accuracy=0.5, diagnostics={**informations, **GAUSSIAN_DIAGNOSTICS}, fitted=None,
                        pointwise={}, sample_ids=[])
    return path


def _notes(app):
    return " ".join(markdown.value for markdown in app.markdown)


def test_the_depth_page_offers_the_gaussian_curve_and_says_how_the_families_agree(db):
    app = open_page("pages/depth.py", db, model="llava-g", task="synergy")
    assert app.multiselect(key="also").options == ["gaussian"]
    notes = _notes(app).replace("\\", "")
    assert "The two estimator families measure different things" in notes
    assert "Pearson's r of the S curves is +1.00 and of the U2 curves -1.00" in notes
    assert "at the output layer 4 is 47% (batch-published) and 29% (gaussian)" in notes
    app.multiselect(key="also").set_value(["gaussian"]).run()
    assert not app.exception
    (figure,) = [json.loads(element.proto.spec) for element in app.get("plotly_chart")]
    names = [trace["name"] for trace in figure["data"]]
    assert names == [f"llava-g · synergy · final · {estimator} · {atom}"
                     for estimator in ("batch-published", "gaussian") for atom in ("S", "U2")]
    assert "compared across estimators" in figure["layout"]["title"]["text"]


def test_the_gaussian_estimator_chosen_in_the_sidebar_offers_the_batch_curve(db):
    app = open_page("pages/depth.py", db, model="llava-g", task="synergy", estimator="gaussian")
    assert app.multiselect(key="also").options == ["batch-published"]
    assert "Pearson's r of the S curves is +1.00" in _notes(app).replace("\\", "")


def test_on_the_zoo_the_depth_page_shows_both_families_for_one_run():
    """The shipped demo: llava-s on the planted vision task at its last checkpoint, BATCH and Gaussian drawn
    together."""
    app = open_page("pages/depth.py", DEFAULT_DB, model="llava-s", task="vision")
    assert "gaussian" in app.multiselect(key="also").options
    app.multiselect(key="also").set_value(["gaussian"]).run()
    assert not app.exception
    (figure,) = [json.loads(element.proto.spec) for element in app.get("plotly_chart")]
    names = {trace["name"] for trace in figure["data"]}
    assert {f"llava-s · vision · stage2-step1500 · {name} · S" for name in ("batch-published", "gaussian")} <= names
    assert "The two estimator families measure different things" in _notes(app).replace("\\", "")
