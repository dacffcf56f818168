"""`profile` against bad inputs: each is refused with a clear one-line message and a non-zero exit, and a database
that already holds results keeps exactly the rows it had."""

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from pidcore.cli import main
from pidcore.models.tiny import build_tiny_model
from pidcore.store import read_atoms, read_runs, table_sizes

FAST = ["--device", "cpu", "--layers", "last", "--bootstrap", "0"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny LLaVA, a good 8-question JSONL task and a results database holding its run."""
    root = tmp_path_factory.mktemp("hostile-profile")
    model = build_tiny_model("llava", root / "tiny-llava")
    with open(root / "good.jsonl", "w") as handle:
        for i in range(8):
            Image.new("RGB", (36, 36), (255 * (i % 2), 0, 0)).save(root / f"img{i}.png")
            handle.write(json.dumps({"id": f"q{i}", "image": f"img{i}.png", "question": "Red?",
                                     "options": ["yes", "no"], "answer": "yes" if i % 2 else "no"}) + "\n")
    db = root / "kept.duckdb"
    assert main(["profile", "--model", str(model), "--dataset", f"jsonl:{root / 'good.jsonl'}", "--db", str(db),
                 *FAST]) == 0
    return root, model, db


def _pickle_only(root: Path, model: Path) -> Path:
    """A model folder with the config but only a pickled checkpoint."""
    folder = root / "pickled"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text((model / "config.json").read_text())
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    return folder


def _duplicates(root: Path) -> Path:
    path = root / "twice.jsonl"
    line = json.dumps({"id": "same", "image": "img0.png", "question": "Red?", "options": ["yes", "no"]})
    path.write_text(f"{line}\n{line}\n")
    return path


def _garbage(root: Path) -> Path:
    path = root / "garbage.jsonl"
    path.write_bytes(b"\xff\xfe\x00 not json\n{also not json\n")
    return path


# (what is wrong, how to make the arguments from the world, what the message says)
CASES = {
    "model folder missing": (lambda root, model: ["--model", str(root / "absent")], "cannot load model"),
    "model without safetensors": (lambda root, model: ["--model", str(_pickle_only(root, model))], "safetensors"),
    "unknown dataset kind": (lambda root, model: ["--dataset", "csv:x.csv"], "unknown dataset kind 'csv'"),
    "dataset file missing": (lambda root, model: ["--dataset", f"jsonl:{root / 'absent.jsonl'}"], "not found"),
    "no usable row": (lambda root, model: ["--dataset", f"jsonl:{_garbage(root)}"], "no usable row in garbage.jsonl"),
    "duplicate ids": (lambda root, model: ["--dataset", f"jsonl:{_duplicates(root)}"], "appear more than once"),
    "limit below one": (lambda root, model: ["--limit", "0"], "limit must be at least 1"),
    "negative bootstrap": (lambda root, model: ["--bootstrap", "-1"], "--bootstrap must not be negative"),
    "unknown dtype": (lambda root, model: ["--dtype", "float7"], "unknown dtype 'float7'"),
}


@pytest.mark.parametrize("case", CASES, ids=CASES)
def test_a_bad_profile_input_is_refused_aloud_and_the_stored_rows_stay(world, case, capsys):
    root, model, db = world
    arguments, message = CASES[case]
    before = (table_sizes(db), read_atoms(db))
    defaults = {"--model": str(model), "--dataset": f"jsonl:{root / 'good.jsonl'}"}
    given = arguments(root, model)
    command = ["profile", "--db", str(db), *FAST]
    for option, value in defaults.items():
        if option not in given:
            command += [option, value]
    assert main(command + given) != 0
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    after = (table_sizes(db), read_atoms(db))
    assert after[0] == before[0]
    assert after[1].equals(before[1])


def test_a_database_path_that_is_a_folder_is_the_os_error_and_a_non_zero_exit(world, tmp_path, capsys):
    root, model, _ = world
    folder = tmp_path / "a-folder.duckdb"
    folder.mkdir()
    code = main(["profile", "--model", str(model), "--dataset", f"jsonl:{root / 'good.jsonl'}", "--db", str(folder),
                 *FAST])
    assert code != 0
    assert "a-folder.duckdb" in capsys.readouterr().err


# Issue 26: options that can be checked before the model loads are, in one line naming the value and what is
# allowed, with exit code 2; the model is never loaded and no sample is probed (N44, N45, N17).
def _one_sample(root: Path) -> Path:
    path = root / "one.jsonl"
    path.write_text(json.dumps({"id": "q0", "image": "img0.png", "question": "Red?", "options": ["yes", "no"],
                                "answer": "no"}) + "\n")
    return path


EARLY = {
    "step past BIGINT": (lambda root: ["--checkpoint-step", "9223372036854775808"],
                         "checkpoint step 9223372036854775808 does not fit the store's 64-bit integer: use a step "
                         "from -9223372036854775808 to 9223372036854775807"),
    "step below BIGINT": (lambda root: ["--checkpoint-step", "-9223372036854775809"], "does not fit the store's"),
    "unknown device": (lambda root: ["--device", "tpu"],
                       "device 'tpu' is not one torch knows; use auto, cpu, cuda, cuda:N or mps"),
    "empty layer list": (lambda root: ["--layers", ",,"], "layers ',,' is not all, last, or a comma list"),
    "negative layer": (lambda root: ["--layers", "-1"], "layers [-1] in '-1' are outside 0..the model's depth"),
    "layer past the depth": (lambda root: ["--layers", "0,3"], "layers [3] in '0,3' are outside 0..2"),
    "one sample": (lambda root: ["--dataset", f"jsonl:{_one_sample(root)}"],
                   "has 1 usable sample(s); the estimator needs at least 4"),
    "limit below the minimum": (lambda root: ["--limit", "3"],
                                "has 3 usable sample(s); the estimator needs at least 4"),
}


@pytest.mark.parametrize("case", EARLY, ids=EARLY)
def test_an_option_checkable_before_loading_fails_before_the_model_loads(world, case, capsys, monkeypatch):
    from pidcore.pipeline import profiling

    root, model, db = world
    loads = []
    monkeypatch.setattr(profiling, "load_vlm", lambda *args, **kwargs: loads.append(args) or 1 / 0)
    arguments, message = EARLY[case]
    given = arguments(root)
    before = (table_sizes(db), read_atoms(db))
    command = ["profile", "--model", str(model), "--db", str(db), "--device", "cpu", "--bootstrap", "0"]
    if "--dataset" not in given:
        command += ["--dataset", f"jsonl:{root / 'good.jsonl'}"]
    assert main(command + given) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error and len(error.strip().splitlines()) == 1
    assert loads == []
    assert table_sizes(db) == before[0] and read_atoms(db).equals(before[1])


def _stage2_file(root: Path) -> Path:
    import numpy as np

    from tests.stage2_files import conversation_records

    rng = np.random.default_rng(0)
    features = rng.normal(size=(2, 12, 4))
    probs = rng.random((3, 12, 2))
    probs /= probs.sum(-1, keepdims=True)
    path = root / "stage2.json"
    path.write_text(json.dumps(conversation_records(*features, *probs)))
    return path


@pytest.mark.parametrize("given, message", [
    (["--checkpoint-step", "9223372036854775808"], "checkpoint step 9223372036854775808 does not fit"),
    (["--device", "tpu"], "device 'tpu' is not one torch knows"),
], ids=["step", "device"])
def test_import_paper_checks_the_step_and_device_before_importing(world, tmp_path, given, message, capsys):
    root, _, _ = world
    db = tmp_path / "imported.duckdb"
    assert main(["import-paper", str(_stage2_file(root)), "--db", str(db), "--bootstrap", "0", *given]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not db.exists() or table_sizes(db).get("runs", 0) == 0


def test_a_300_character_model_name_is_a_name_or_a_clear_error_never_an_os_error(world, tmp_path, capsys):
    """N6: too long to be a path, a 300-character --model names an import, and profile says it cannot load it."""
    from pidcore.store import read_runs

    root, _, _ = world
    long_name = "a" * 300
    db = tmp_path / "named.duckdb"
    assert main(["import-paper", str(_stage2_file(root)), "--db", str(db), "--model", long_name, "--bootstrap", "0",
                 "--device", "cpu"]) == 0
    assert list(read_runs(db)["model"]) == [long_name]
    for model in (long_name, f"./{long_name}", f"org/{long_name}"):
        assert main(["profile", "--model", model, "--dataset", f"jsonl:{root / 'good.jsonl'}", "--db", str(db),
                     *FAST]) == 2
        error = capsys.readouterr().err
        assert "cannot load model" in error and "OSError" not in error and "Traceback" not in error


def test_a_dataset_kind_in_capitals_is_the_same_task_and_the_same_run(world, capsys):
    """N7: JSONL:x resumes the run of jsonl:x (one task name, one run id); lower-case specs keep their ids."""
    from pidcore.pipeline.settings import ProfileSettings
    from pidcore.store import read_runs

    root, model, db = world
    before = (read_runs(db), table_sizes(db))
    assert main(["profile", "--model", str(model), "--dataset", f"JSONL:{root / 'good.jsonl'}", "--db", str(db),
                 *FAST]) == 0
    after = read_runs(db)
    assert list(after["run_id"]) == list(before[0]["run_id"]) and list(after["task"]) == ["jsonl:good.jsonl"]
    assert table_sizes(db) == before[1]
    upper, lower = (ProfileSettings(model="m", dataset=f"{kind}:/data/a.jsonl", db="x", step=5, checkpoint="c")
                    for kind in ("JSONL", "jsonl"))
    assert upper.task_name == lower.task_name == "jsonl:a.jsonl"
    assert upper.run_id() == lower.run_id() == "d57020f49c4d2ebd"  # the id lower-case specs had before


def test_a_hub_id_is_named_whole_and_a_local_folder_as_before(world, tmp_path):
    """N5: hub ids teamA/vlm-7b and teamB/vlm-7b are two models named by their whole ids, not both "vlm-7b"; a
    local folder is named by its folder (the one above when it is named like the checkpoint), as before."""
    from pidcore.models.loading import load_vlm
    from pidcore.pipeline.profiling import profile
    from pidcore.pipeline.settings import ProfileSettings

    root, model, _ = world
    vlm = load_vlm(str(model), "cpu")
    db = tmp_path / "hub.duckdb"
    for hub_id in ("teamA/vlm-7b", "teamB/vlm-7b"):
        profile(ProfileSettings(model=hub_id, dataset=f"jsonl:{root / 'good.jsonl'}", db=str(db), device="cpu",
                                layers="last", bootstrap=0, progress=False), vlm)
    assert sorted(read_atoms(db)["model"]) == ["teamA/vlm-7b", "teamB/vlm-7b"]
    assert ProfileSettings(model=f"{model}/", dataset="x", db="x").model_name == "tiny-llava"
    assert ProfileSettings(model=str(model), dataset="x", db="x", checkpoint="tiny-llava").model_name == root.name


def test_a_rerun_under_another_name_renames_the_stored_run_and_says_so(world, tmp_path):
    """N3: the same run profiled again with another --name resumes it (one run, one id) and takes the new name,
    with a warning naming the old and the new one; a rerun under the same name says nothing of names."""
    from tests.cli_run import run_cli

    root, model, _ = world
    db = tmp_path / "named.duckdb"
    command = ["profile", "--model", str(model), "--dataset", f"jsonl:{root / 'good.jsonl'}", "--db", str(db), *FAST]
    assert run_cli(*command).returncode == 0
    (run_id,) = read_runs(db)["run_id"]
    renamed = run_cli(*command, "--name", "my-llava")
    assert renamed.returncode == 0, renamed.stderr[-2000:]
    assert "model 'tiny-llava' -> 'my-llava'" in renamed.stderr
    assert list(read_runs(db)["run_id"]) == [run_id] and list(read_atoms(db)["model"]) == ["my-llava"]
    again = run_cli(*command, "--name", "my-llava")
    assert again.returncode == 0 and "->" not in again.stderr


def test_checkpoint_folders_given_steps_without_checkpoint_names_are_one_model_on_the_timeline(world, tmp_path,
                                                                                               monkeypatch):
    """N8: runs/llava-x/step-100 and step-5000 profiled with --checkpoint-step and --stage but no --checkpoint are
    checkpoints step-100 and step-5000 of one model, llava-x; a run without a step, or of a folder whose name lacks
    the step's number, stays checkpoint final (its id kept). Where checkpoints with a stage and step are one per
    model, the time page names what is missing (one --name, a --checkpoint each), not the options given."""
    from pidcore.dashboard.text import markdown_text
    from tests.app_pages import open_page

    root, model, kept = world
    db, apart = tmp_path / "steps.duckdb", tmp_path / "apart.duckdb"
    monkeypatch.setenv("PIDCORE_RESULTS_DIRS", str(tmp_path))
    for step in (100, 5000):
        folder = tmp_path / "runs" / "llava-x" / f"step-{step}"
        shutil.copytree(model, folder)
        steps = ["--dataset", f"jsonl:{root / 'good.jsonl'}", *FAST, "--checkpoint-step", str(step), "--stage", "2"]
        assert main(["profile", "--model", str(folder), "--db", str(db), *steps]) == 0
        assert main(["profile", "--model", str(folder), "--db", str(apart), "--checkpoint", "final", *steps]) == 0
    shown = read_atoms(db).sort_values("step")
    assert shown["model"].tolist() == ["llava-x", "llava-x"] and shown["checkpoint"].tolist() == ["step-100",
                                                                                                  "step-5000"]
    from pidcore.pipeline.settings import default_checkpoint

    assert default_checkpoint(str(model), None) == "final" and list(read_runs(kept)["checkpoint"]) == ["final"]
    assert default_checkpoint(str(tmp_path / "runs" / "llava-x"), 100) == "final", "a folder without the step's number"
    assert open_page("pages/timeline.py", db).selectbox(key="train_model").value == "llava-x"
    notes = " ".join(info.value for info in open_page("pages/timeline.py", apart).info)
    named = ", ".join(markdown_text(f"step-{step}") for step in (100, 5000))
    assert f"one per model and task ({named})" in notes and "`--name MODEL`" in notes
