"""The sweep file: units in order with the settings every unit shares, paths relative to the file, and every
mistake (a typo'd key, a missing key, a wrong type, two units under one name) an error naming it."""

from pathlib import Path

import pytest

from pidcore.pipeline.sweep_file import SweepFileError, read_sweep
from pidcore.pipeline.sweep_plan import describe, plan

SWEEP = """
db = "out/results.duckdb"

[settings]
layers = "last"
estimator = ["published", "calibrated"]
seed = 3
batch_size = 4
bootstrap = 0

[[models]]
path = "models/a"
name = "model-a"
family = "Tiny-LLaVA"
gpus = 2

[[models]]
path = "org/hub-model"
dtype = "bfloat16"

[[models.checkpoints]]
path = "ckpt/stage1-step10"
step = 10
stage = "1"

[[datasets]]
spec = "shapes:synergy"
task = "synergy"
limit = 12

[[datasets]]
spec = "jsonl:data/questions.jsonl"
task = "questions"
"""


def _write(folder: Path, text: str) -> Path:
    for model in ("models/a", "ckpt/stage1-step10"):
        (folder / model).mkdir(parents=True, exist_ok=True)
    path = folder / "sweep.toml"
    path.write_text(text)
    return path


def test_units_cross_every_model_and_checkpoint_with_every_dataset(tmp_path):
    sweep = read_sweep(_write(tmp_path, SWEEP))
    assert sweep.db == tmp_path / "out" / "results.duckdb"
    assert sweep.shards == tmp_path / "out" / "results.duckdb.shards"
    assert [unit.label for unit in sweep.units] == [
        "model-a / final / synergy", "model-a / final / questions", "org/hub-model / final / synergy",
        "org/hub-model / final / questions", "org/hub-model / stage1-step10 / synergy",
        "org/hub-model / stage1-step10 / questions"]
    first, _, hub, _, checkpoint, questions = sweep.units
    assert first.settings.model == str(tmp_path / "models" / "a") and first.settings.family == "Tiny-LLaVA"
    assert first.gpus == 2 and first.settings.spread and not hub.settings.spread and hub.gpus is None
    assert hub.settings.model == "org/hub-model" and hub.settings.dtype == "bfloat16"  # no such folder: a hub id
    assert checkpoint.settings.model == str(tmp_path / "ckpt" / "stage1-step10")
    assert (checkpoint.settings.step, checkpoint.settings.stage, checkpoint.settings.name) == (10, "1", "org/hub-model")
    assert questions.settings.dataset == f"jsonl:{tmp_path / 'data' / 'questions.jsonl'}"
    assert first.settings.dataset == "shapes:synergy" and first.settings.limit == 12 and questions.settings.limit is None
    settings = first.settings
    assert (settings.layers, settings.seed, settings.chunk, settings.bootstrap, settings.db) == (
        "last", 3, 4, 0, str(sweep.db))
    assert first.modes == ("published", "calibrated")
    assert first.estimators == ["batch-published", "batch-calibrated"]


@pytest.mark.parametrize(("change", "message"), [
    (("[settings]", "[settings]\nbatchsize = 4"), "[settings]: unknown key(s) batchsize; allowed: layers,"),
    (('path = "models/a"', 'pth = "models/a"'), "[[models]] #1: unknown key(s) pth"),
    (('spec = "shapes:synergy"\n', ""), "[[datasets]] #1: missing key(s) spec"),
    (("limit = 12", 'limit = "12"'), "[[datasets]] #1: limit must be int, got '12'"),
    (("gpus = 2", "gpus = true"), "[[models]] #1: gpus must be int, got True"),
    (("limit = 12", "limit = 0"), "limit must be at least 1"),
    (('estimator = ["published", "calibrated"]', 'estimator = "bayes"'), "estimator must be one of published, "
                                                                          "calibrated"),
    (('spec = "shapes:synergy"', 'spec = "csv:x.csv"'), "unknown dataset kind 'csv'"),
    (('task = "questions"', 'task = "synergy"'), "appear more than once"),
    (('path = "ckpt/stage1-step10"', 'path = "ckpt/stage1-step10"\nname = "final"'), "checkpoint name 'final'"),
    (('db = "out/results.duckdb"', ""), "missing key(s) db"),
    (("[[models.checkpoints]]", "[[models.checkpoints]]\n[models.checkpoints.extra]"), "unknown key(s) extra"),
    (("seed = 3", "seed = 3\nseed = 4"), "is not valid TOML"),
])
def test_a_mistake_in_the_sweep_file_is_an_error_naming_it(tmp_path, change, message):
    with pytest.raises(SweepFileError, match=None) as raised:
        read_sweep(_write(tmp_path, SWEEP.replace(*change, 1)))
    assert message in str(raised.value)
    assert str(tmp_path / "sweep.toml") in str(raised.value)


def test_a_missing_sweep_file_is_an_error(tmp_path):
    with pytest.raises(SweepFileError, match="cannot read sweep file"):
        read_sweep(tmp_path / "nowhere.toml")


def test_the_plan_fails_fast_on_a_missing_dataset_file(tmp_path):
    sweep = read_sweep(_write(tmp_path, SWEEP))
    with pytest.raises(ValueError, match="jsonl dataset file not found"):
        describe(sweep, plan(sweep))


def test_the_papers_breadth_sweep_names_its_26_models_and_4_datasets_as_the_published_results_do():
    import csv

    from pidcore.shipped import PAPER_CSV

    sweep = read_sweep(Path(__file__).resolve().parent.parent / "docs" / "sweeps" / "paper-breadth.toml")
    with open(PAPER_CSV / "atoms.csv", newline="") as handle:
        published = {(row["model"], row["family"], row["dataset"]) for row in csv.DictReader(handle)}
    planned = {(unit.settings.model_name, unit.settings.family, unit.settings.task_name) for unit in sweep.units}
    assert len(sweep.units) == 104 and planned == published
    assert all("/" in unit.settings.model for unit in sweep.units), "every model is a hub id"
    big = {unit.settings.model_name for unit in sweep.units if unit.gpus > 1}
    assert {"Qwen2-VL-72B", "Llama-3.2-Vision-90B", "InternVL3-78B"} <= big
    assert all(unit.settings.spread == (unit.gpus > 1) for unit in sweep.units)


def test_probe_conventions_and_image_folders_are_sweep_settings(tmp_path):
    default = read_sweep(_write(tmp_path, SWEEP))
    assert {unit.settings.probes for unit in default.units} == {"published"}
    text = SWEEP.replace('seed = 3', 'seed = 3\nprobes = "clean"').replace(
        'task = "questions"', 'task = "questions"\nimage_dir = "images"')
    units = read_sweep(_write(tmp_path, text)).units
    assert {unit.settings.probes for unit in units} == {"clean"}
    assert {unit.settings.image_dir for unit in units} == {None, str(tmp_path / "images")}
    assert units[0].settings.run_id() != default.units[0].settings.run_id()
    with pytest.raises(SweepFileError, match="probes must be one of published, clean"):
        read_sweep(_write(tmp_path, SWEEP.replace('seed = 3', 'seed = 3\nprobes = "paper"')))
