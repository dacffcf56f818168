"""The sweep file: units in order with the settings every unit shares, paths relative to the file, and every
mistake (a typo'd key, a missing key, a wrong type, two units under one name) an error naming it."""

import shutil
import tomllib
from pathlib import Path

import pytest

from pidcore.cli import main
from pidcore.datasets.sample import DatasetError
from pidcore.models.adapters import ADAPTERS, CONVERTED, UNSUPPORTED
from pidcore.models.tiny import build_tiny_model
from pidcore.pipeline.sweep import run_sweep
from pidcore.pipeline.sweep_file import SweepFileError, read_sweep
from pidcore.pipeline.sweep_plan import NO_DATASET, UNKNOWN_TYPE, plan

PAPER_SWEEP = Path(__file__).resolve().parent.parent / "docs" / "sweeps" / "paper-breadth.toml"

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
    assert first.settings.dataset == "shapes:synergy" and first.settings.limit == 12
    assert questions.settings.limit is None
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
    (('dtype = "bfloat16"', 'dtype = "bfloat16"\nmodel_type = "mlama"'), "[[models]] #2: model_type 'mlama' is "
                                                                         "neither a transformers model type nor one "
                                                                         "pidcore.models.adapters names"),
    (('dtype = "bfloat16"', 'dtype = "bfloat16"\nmodel_type = "mlama"'), "did you mean mllama"),
    (('dtype = "bfloat16"', 'dtype = "bfloat16"\nmodel_type = 3'), "model_type must be str, got 3"),
])
def test_a_mistake_in_the_sweep_file_is_an_error_naming_it(tmp_path, change, message):
    with pytest.raises(SweepFileError, match=None) as raised:
        read_sweep(_write(tmp_path, SWEEP.replace(*change, 1)))
    assert message in str(raised.value)
    assert str(tmp_path / "sweep.toml") in str(raised.value)


def test_a_missing_sweep_file_is_an_error(tmp_path):
    with pytest.raises(SweepFileError, match="cannot read sweep file"):
        read_sweep(tmp_path / "nowhere.toml")


def test_a_sweep_stops_on_a_missing_dataset_file_before_anything_runs_or_is_written(tmp_path):
    sweep = read_sweep(_write(tmp_path, SWEEP))
    with pytest.raises(DatasetError, match="jsonl dataset file not found"):
        plan(sweep)
    with pytest.raises(DatasetError, match="jsonl dataset file not found"):
        run_sweep(sweep, progress=False)
    assert not (tmp_path / "out").exists(), "neither the database nor the shard folder is made"


DRY_RUN = """
db = "out/results.duckdb"

[settings]
layers = "last"
bootstrap = 0

[[models]]
path = "models/tiny-llava"
name = "tiny-llava"
model_type = "gemma3"          # its config says llava, and wins

[[models]]
path = "pidcore-test/not-cached-mllama"
model_type = "mllama"

[[models]]
path = "pidcore-test/not-cached-internvl2.5"
model_type = "internvl_chat"
trust_remote_code = true

[[models]]
path = "pidcore-test/not-cached-anything"

[[datasets]]
spec = "shapes:synergy"
task = "synergy"
limit = 4

[[datasets]]
spec = "jsonl:data/not-downloaded.jsonl"
task = "questions"
"""


def _dry_run(path: Path, capsys) -> list[str]:
    """The dry run's output lines; it must succeed."""
    code = main(["sweep", str(path), "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out.splitlines()


def test_a_dry_run_names_each_model_it_can_profile_or_why_not_and_lists_a_missing_dataset(tmp_path, capsys):
    build_tiny_model("llava", tmp_path / "models" / "tiny-llava")
    path = tmp_path / "sweep.toml"
    path.write_text(DRY_RUN)
    lines = _dry_run(path, capsys)
    missing = tmp_path / "data" / "not-downloaded.jsonl"
    assert "  read       synergy: 4 samples" in lines
    assert (f"  missing    questions (jsonl:{missing}): jsonl dataset file not found: {missing}") in lines
    planned = [line for line in lines if line.startswith("run ")]
    assert len(planned) == 4 and all("/ synergy" in line and line.split()[-1].isalnum() for line in planned)
    waiting = [line for line in lines if line.startswith(NO_DATASET)]
    assert len(waiting) == 4 and all("/ questions" in line for line in waiting)
    assert all(line.endswith("none yet (a run id needs the dataset's content)") for line in waiting)
    assert "0 done, 8 missing: 0 to merge, 0 to resume, 4 to run, 4 without their dataset; work left: 16 samples " \
           "to probe" in "\n".join(lines)
    models = lines[lines.index("models (type from a local copy of the config, else the sweep file's model_type):")
                   + 1:]
    assert models[0].split() == ["yes", "tiny-llava", "llava", "(its", "config;", "the", "sweep", "file", "says",
                                 "'gemma3')"]
    assert models[1].split() == ["yes", "pidcore-test/not-cached-mllama", "mllama", "(the", "sweep", "file's",
                                 "model_type)"]
    assert models[2] == ("  yes      pidcore-test/not-cached-internvl2.5 internvl_chat (the sweep file's model_type; "
                         "converted to the native internvl family on first load, once)")
    assert models[3].split()[:2] == ["unknown", "pidcore-test/not-cached-anything"]
    assert models[3].endswith(f"(no local config, no model_type in the sweep file): {UNKNOWN_TYPE}")
    assert models[4] == ("3 of 4 models can be profiled here; the others: pidcore-test/not-cached-anything "
                         "(type unknown)")
    assert len(models) == 5
    assert not (tmp_path / "out").exists(), "a dry run writes nothing"


def test_a_family_without_an_adapter_is_named_with_the_adapter_tables_message(tmp_path, capsys):
    path = tmp_path / "sweep.toml"
    path.write_text(DRY_RUN.replace('model_type = "mllama"', 'model_type = "blip-2"'))
    lines = _dry_run(path, capsys)
    line = next(line for line in lines if "not-cached-mllama" in line and "blip-2" in line)
    assert line.split()[0] == "no" and "model type 'blip-2' has no adapter: add an entry to " \
                                       "pidcore.models.adapters.ADAPTERS" in line
    assert any(line.split()[:3] == ["yes", "tiny-llava", "gemma3"] for line in lines), "no folder: the key"
    assert lines[-1] == ("2 of 4 models can be profiled here; the others: pidcore-test/not-cached-mllama (blip-2); "
                         "pidcore-test/not-cached-anything (type unknown)")


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


# The model type of each family of the paper's sweep, as its configs declare it (Cambrian-1's in its own code).
PAPER_TYPES = {"LLaVA-OneVision": "llava_onevision", "Qwen2-VL": "qwen2_vl", "Qwen2.5-VL": "qwen2_5_vl",
               "InternVL2.5": "internvl_chat", "InternVL3": "internvl", "Gemma3": "gemma3", "LLaVA-1.5": "llava",
               "Llama-3.2-Vision": "mllama", "Cambrian-1": "cambrian_llama", "Fuyu": "fuyu",
               "InstructBLIP": "instructblip"}


def test_the_papers_dry_run_runs_without_its_datasets_and_names_the_models_it_cannot_profile(tmp_path, capsys):
    shutil.copy(PAPER_SWEEP, tmp_path)  # beside no data/ folder, wherever the datasets were downloaded
    models = tomllib.loads(PAPER_SWEEP.read_text())["models"]
    assert {model["name"]: model["model_type"] for model in models} == {
        model["name"]: PAPER_TYPES[model["family"]] for model in models}
    lines = _dry_run(tmp_path / PAPER_SWEEP.name, capsys)
    assert sum(line.startswith("  missing ") for line in lines) == 4
    assert sum(line.startswith(NO_DATASET) for line in lines) == 104
    runnable = [model["name"] for model in models
                if model["model_type"] in (set(ADAPTERS) | set(CONVERTED)) - set(UNSUPPORTED)]
    others = [model for model in models if model["name"] not in runnable]
    assert {model["name"] for model in others} == {"Cambrian-1-8B", "Cambrian-1-34B"}
    assert lines[-1] == ("24 of 26 models can be profiled here; the others: Cambrian-1-8B, Cambrian-1-34B "
                         "(cambrian_llama)")
    for model in others:
        reason = UNSUPPORTED[model["model_type"]]
        assert any(line.split()[:3] == ["no", model["name"], model["model_type"]] and line.endswith(reason)
                   for line in lines), model["name"]
        assert model["name"] in lines[-1]
    for name in runnable:
        assert any(line.split()[:2] == ["yes", name] for line in lines), name


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
