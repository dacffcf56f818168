"""The shipped demo data under data/: the zoo learned every task and the planted atoms come out on top."""

from pathlib import Path

import pytest

from pidcore.analysis.regimes import final_rows
from pidcore.atoms import ATOMS
from pidcore.datasets.shapes import PLANTED, TASKS
from pidcore.demo.zoo import ZOO
from pidcore.models.loading import load_vlm
from pidcore.pipeline.settings import DEFAULT_ESTIMATOR
from pidcore.shipped import DEFAULT_DB
from pidcore.store import read_atoms, read_task_pid

DATA = DEFAULT_DB.parent


@pytest.fixture(scope="module")
def atoms():
    """The default estimator's rows: the one the dashboard opens on."""
    every = read_atoms(DEFAULT_DB)
    return every[every["estimator"] == DEFAULT_ESTIMATOR]


CELLS = [(spec.name, task) for spec in ZOO for task in TASKS]


@pytest.mark.parametrize("model, task", CELLS)
def test_every_zoo_model_reaches_90_percent_on_every_task(atoms, model, task):
    final = final_rows(atoms).set_index(["model", "task"])
    assert final.loc[(model, task), "accuracy"] >= 0.9


@pytest.mark.parametrize("model, task", CELLS)
def test_the_planted_atom_is_the_largest_at_the_final_checkpoint_and_layer(atoms, model, task):
    row = final_rows(atoms).set_index(["model", "task"]).loc[(model, task)]
    assert max(ATOMS, key=lambda atom: row[atom]) == PLANTED[task], row[list(ATOMS)].to_dict()


def test_checkpoints_span_both_stages_and_every_layer_is_profiled(atoms):
    for spec in ZOO:
        rows = atoms[atoms["model"] == spec.name]
        assert rows["checkpoint"].nunique() >= 8 and set(rows["stage"]) == {"1", "2"}
        per_run = rows.groupby(["task", "checkpoint"])["layer"].nunique()
        assert (per_run == spec.layers + 1).all() and len(per_run) == rows["checkpoint"].nunique() * len(TASKS)


def test_the_other_estimators_cover_the_same_rows():
    """batch-calibrated at every checkpoint and layer, batch-published-nofallback at the last checkpoints."""
    every = read_atoms(DEFAULT_DB)
    key = ["model", "task", "checkpoint", "layer"]
    rows = {name: set(map(tuple, group[key].to_numpy())) for name, group in every.groupby("estimator")}
    last = every["step"] == every.groupby("model")["step"].transform("max")
    at_last = set(map(tuple, every[last & (every["estimator"] == DEFAULT_ESTIMATOR)][key].to_numpy()))
    assert rows["batch-calibrated"] == rows[DEFAULT_ESTIMATOR]
    assert rows["batch-published-nofallback"] == at_last and len(at_last) == 88


def test_the_exact_generator_pid_is_stored_with_each_task():
    exact = read_task_pid(DEFAULT_DB).set_index("task")
    for task in TASKS:
        assert exact.loc[task, "planted"] == PLANTED[task]
        assert exact.loc[task, PLANTED[task]] == pytest.approx(exact.loc[task, list(ATOMS)].max())


def test_final_models_load_and_the_shipped_data_is_small():
    for spec in ZOO:
        vlm = load_vlm(str(DATA / "models" / spec.name), device="cpu")
        assert vlm.adapter.family == spec.family
        assert vlm.model.config.get_text_config().num_hidden_layers == spec.layers
    size = sum(path.stat().st_size for path in Path(DATA).rglob("*") if path.is_file())
    assert size <= 40 * 2**20, size


def test_the_gaussian_family_covers_the_last_checkpoints_beside_batch():
    every = read_atoms(DEFAULT_DB)
    key = ["model", "task", "checkpoint", "layer"]
    last = every["step"] == every.groupby("model")["step"].transform("max")
    gaussian = every[every["estimator"] == "gaussian"]
    assert set(map(tuple, gaussian[key].to_numpy())) == set(map(tuple, every[last & (
        every["estimator"] == DEFAULT_ESTIMATOR)][key].to_numpy()))
    assert gaussian[list(ATOMS)].notna().all().all() and gaussian["u1_lo"].notna().all()


@pytest.mark.parametrize("model", [spec.name for spec in ZOO])
def test_the_planted_vision_only_input_reads_as_u1_in_both_families(model):
    """On the vision task only the image decides the answer. The Gaussian PID reads it in the representations
    before any token has seen another (layer 0: the question's embeddings cannot carry the image), BATCH in the
    answers the lens reads at the output; in both U1 is the largest atom, by a margin."""
    every = read_atoms(DEFAULT_DB)
    run = every[(every["model"] == model) & (every["task"] == "vision")]
    run = run[run["step"] == run["step"].max()].set_index(["estimator", "layer"])
    depth = int(run["n_layers"].iloc[0])
    for estimator, layer in (("gaussian", 0), (DEFAULT_ESTIMATOR, depth)):
        row = run.loc[(estimator, layer), list(ATOMS)]
        others = row.drop("u1")
        assert row["u1"] > 0.2 and row["u1"] > 2 * others.max(), (estimator, layer, row.to_dict())
