"""`profile --hidden-states`: the Gaussian PID on hidden states stored per layer beside BATCH's rows of the same run,
added to a stored run without changing any of its rows, and refused aloud where features are missing."""

import numpy as np
import pytest

from pidcore.atoms import ATOMS
from pidcore.cli import main
from pidcore.models.tiny import build_tiny_model
from pidcore.pipeline.gaussian_layers import estimate_gaussian_layers, output_target
from pidcore.pipeline.settings import ProfileSettings, gaussian_estimator_name
from pidcore.store import load_hidden_states, load_samples, read_atoms, read_layer_results, read_runs, table_sizes
from tests.colour_files import write_colour_task


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("gaussian-profile")
    model = build_tiny_model("llava", root / "tiny-llava")
    return root, model


def _profile(setup, db, *extra):
    return main(["profile", "--model", str(setup[1]), "--dataset", "shapes:vision", "--limit", "120", "--db", str(db),
                 "--device", "cpu", "--bootstrap", "10", "--probes", "clean", *extra])


def _batch_rows(db):
    atoms = read_atoms(db)
    return atoms[atoms["estimator"] == "batch-published"].sort_values("layer")[["layer", *ATOMS]].values.tolist()


def _probe_bytes(db):
    return sorted((row.sample_id, row.probs.tobytes()) for run_id in read_runs(db)["run_id"]
                  for row in load_samples(db, run_id))


def test_hidden_states_give_a_gaussian_row_per_layer_in_the_same_run(setup, tmp_path, capsys):
    db = tmp_path / "both.duckdb"
    assert _profile(setup, db, "--hidden-states") == 0
    atoms = read_atoms(db)
    assert len(read_runs(db)) == 1
    gaussian = atoms[atoms["estimator"] == "gaussian"].sort_values("layer")
    assert gaussian["layer"].tolist() == [0, 1, 2] == sorted(atoms[atoms["estimator"] == "batch-published"]["layer"])
    assert gaussian[list(ATOMS)].notna().all().all() and (gaussian["n_samples"] == 60).all()
    assert (gaussian["s_lo"] <= gaussian["s"]).all() and (gaussian["s"] <= gaussian["s_hi"]).all()
    run_id = read_runs(db)["run_id"].iloc[0]
    features = load_hidden_states(db, run_id)
    assert len(features) == 120 and next(iter(features.values())).shape == (2, 3, 32)
    assert "gaussian (hidden states) at layer 2" in capsys.readouterr().out
    sizes = table_sizes(db)
    assert _profile(setup, db, "--hidden-states") == 0  # a rerun adds nothing
    assert table_sizes(db) == sizes


def test_adding_hidden_states_to_a_stored_run_changes_none_of_its_rows(setup, tmp_path):
    db = tmp_path / "later.duckdb"
    assert _profile(setup, db) == 0
    probes, batch = _probe_bytes(db), _batch_rows(db)
    assert set(read_atoms(db)["estimator"]) == {"batch-published"}
    assert _profile(setup, db, "--hidden-states", "--components", "2", "--no-gaussianise") == 0
    assert len(read_runs(db)) == 1
    assert _probe_bytes(db) == probes and _batch_rows(db) == batch
    assert set(read_atoms(db)["estimator"]) == {"batch-published", "gaussian-pca2-raw"}


def test_a_run_without_features_is_refused_with_the_fix(setup, tmp_path):
    db = tmp_path / "none.duckdb"
    assert _profile(setup, db) == 0
    run_id = read_runs(db)["run_id"].iloc[0]
    settings = ProfileSettings(model=str(setup[1]), dataset="unused", db=str(db))
    with pytest.raises(ValueError, match="no hidden-state features for 120 of its 120 samples.*--hidden-states"):
        estimate_gaussian_layers(settings, run_id)


def test_the_target_keeps_the_log_ratios_distances():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=50)
    target = output_target(probs)
    centred = np.log(probs) - np.log(probs).mean(1, keepdims=True)
    assert target.shape == (50, 3)
    distances = np.linalg.norm(target[:, None] - target[None], axis=-1)
    assert np.allclose(distances, np.linalg.norm(centred[:, None] - centred[None], axis=-1))
    assert np.isfinite(output_target(np.array([[1.0, 0.0], [0.5, 0.5]]))).all()


def test_names_say_what_differs_from_the_defaults():
    assert gaussian_estimator_name(32, True) == "gaussian"
    assert gaussian_estimator_name(8, True) == "gaussian-pca8"
    assert gaussian_estimator_name(32, False) == "gaussian-raw"


def test_layers_with_nothing_to_split_are_stored_aloud_without_atoms(setup, tmp_path, caplog):
    root, model = setup
    write_colour_task(root, "colours.jsonl", 120, lambda i: "What colour is the shape?")  # 3 images, one question
    db = tmp_path / "colours.duckdb"
    assert _profile_colours(model, root, db) == 0
    rows = _diagnostics_by_layer(db)
    assert rows[0]["not_estimated"].startswith("the image or the question tokens' hidden states are the same")
    assert all("not_estimated" in row for row in rows.values())  # 3 distinct samples: a singular covariance
    atoms = read_atoms(db)
    assert atoms[atoms["estimator"] == "gaussian"][list(ATOMS)].isna().all().all()
    assert "layer(s) 0 not estimated" in caplog.text
    sizes = table_sizes(db)
    assert _profile_colours(model, root, db) == 0 and table_sizes(db) == sizes  # not tried again


def _profile_colours(model, root, db):
    return main(["profile", "--model", str(model), "--dataset", f"jsonl:{root / 'colours.jsonl'}", "--db", str(db),
                 "--device", "cpu", "--bootstrap", "0", "--probes", "clean", "--hidden-states"])


def _diagnostics_by_layer(db):
    """The Gaussian rows' diagnostics by layer."""
    run_id = read_runs(db)["run_id"].iloc[0]
    return {result.layer: result.diagnostics
            for result in read_layer_results(str(db), run_id, "gaussian", [0, 1, 2])}
