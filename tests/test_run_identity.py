"""A run is what it says it is: keyed by the model's and the dataset's identity and every setting that changes its
rows, resumed when they are the same, a new run (and the one the pages show) when they are not; a repeated sample
id is refused aloud."""

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from pidcore.cli import main
from pidcore.datasets import DatasetError, load_dataset
from pidcore.models.identity import model_identity
from pidcore.models.tiny import build_tiny_model
from pidcore.store import read_atoms, read_runs, table_sizes

COLOURS = {"red": (255, 0, 0), "blue": (0, 0, 255), "green": (0, 200, 0)}
FAST = ["--device", "cpu", "--layers", "last", "--bootstrap", "0"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny LLaVA and a 12-question JSONL task whose gold answer is the image's colour."""
    root = tmp_path_factory.mktemp("identity")
    model = build_tiny_model("llava", root / "tiny-llava")
    write_questions(root / "colours.jsonl", root, ids=[f"q{i}" for i in range(12)])
    return root, model


def write_questions(path: Path, root: Path, ids: list[str], answer_of=lambda name: name) -> None:
    """One colour question per id; `answer_of` maps the image's colour to the gold answer written."""
    with open(path, "w") as handle:
        for i, sample_id in enumerate(ids):
            name = list(COLOURS)[i % 3]
            Image.new("RGB", (36, 36), COLOURS[name]).save(root / f"img{i}.png")
            handle.write(json.dumps({"id": sample_id, "image": f"img{i}.png", "question": "What colour is the shape?",
                                     "options": list(COLOURS), "answer": answer_of(name)}) + "\n")


def profile(model: Path | str, dataset: Path | str, db: Path, *extra: str) -> int:
    return main(["profile", "--model", str(model), "--dataset", f"jsonl:{dataset}", "--db", str(db), *FAST, *extra])


def test_duplicate_sample_ids_are_refused_by_name_and_nothing_is_stored(world, tmp_path, capsys):
    root, model = world
    write_questions(root / "twice.jsonl", root, ids=[f"q{i % 12}" for i in range(24)])
    db = tmp_path / "r.duckdb"
    assert profile(model, root / "twice.jsonl", db) == 2
    error = capsys.readouterr().err
    assert "12 sample id(s) appear more than once: 'q0' (2 rows), 'q1' (2 rows)" in error and "--dedupe" in error
    assert not db.exists()


def test_dedupe_first_keeps_the_first_row_of_each_id_and_counts_the_others(world, tmp_path):
    root, model = world
    write_questions(root / "twice.jsonl", root, ids=[f"q{i % 12}" for i in range(24)])
    loaded = load_dataset(f"jsonl:{root / 'twice.jsonl'}", dedupe="first")
    assert [sample.id for sample in loaded.samples] == [f"q{i}" for i in range(12)]
    assert len(loaded.skipped) == 12 and loaded.skipped[0] == ("q0", "duplicate id: the first row with id 'q0' is kept")
    db = tmp_path / "r.duckdb"
    assert profile(model, root / "twice.jsonl", db, "--dedupe", "first") == 0
    assert table_sizes(db)["samples"] == 12


@pytest.mark.parametrize("kind", ["mmbench", "pope"])
def test_duplicate_ids_are_refused_in_every_format(tmp_path, kind):
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(image)
    if kind == "mmbench":
        import base64

        encoded = base64.b64encode(image.read_bytes()).decode()
        lines = ["index\tquestion\tA\tB\tanswer\timage"] + [f"7\tQ?\ta\tb\tA\t{encoded}"] * 2
        path = tmp_path / "mmbench.tsv"
        path.write_text("\n".join(lines) + "\n")
    else:
        path = tmp_path / "pope.jsonl"
        row = {"question_id": 7, "image": "a.png", "text": "Is there a dog?", "label": "yes"}
        path.write_text(f"{json.dumps(row)}\n{json.dumps(row)}\n")
    with pytest.raises(DatasetError, match=r"1 sample id\(s\) appear more than once: '7' \(2 rows\)"):
        load_dataset(f"{kind}:{path}")


def test_a_rerun_with_another_task_step_or_stage_is_a_new_run(world, tmp_path):
    root, model = world
    db = tmp_path / "r.duckdb"
    data = root / "colours.jsonl"
    assert profile(model, data, db, "--task", "colours") == 0
    assert profile(model, data, db, "--task", "colours") == 0
    assert len(read_runs(db)) == 1
    assert profile(model, data, db, "--task", "tints") == 0
    assert profile(model, data, db, "--task", "colours", "--checkpoint-step", "5") == 0
    assert profile(model, data, db, "--task", "colours", "--checkpoint-step", "5", "--stage", "2") == 0
    runs = read_runs(db).sort_values("run_id")
    assert len(runs) == 4 and runs["run_id"].is_unique
    shown = read_atoms(db)
    assert sorted(shown["task"]) == ["colours", "tints"]
    assert shown.set_index("task").loc["colours", ["step", "stage"]].tolist() == [5, "2"]


def test_a_model_or_dataset_spelt_two_ways_is_one_run(world, tmp_path, monkeypatch):
    root, model = world
    db = tmp_path / "r.duckdb"
    assert profile(model, root / "colours.jsonl", db) == 0
    monkeypatch.chdir(root)
    assert profile(f"{model.name}/", "colours.jsonl", db) == 0
    assert profile(f"./{model.name}", str((root / "colours.jsonl").resolve()), db) == 0
    assert len(read_runs(db)) == 1
    assert len(read_atoms(db)) == 1


def test_an_edited_dataset_is_a_new_run_and_the_pages_show_the_new_results(world, tmp_path):
    root, model = world
    db = tmp_path / "r.duckdb"
    data = tmp_path / "colours.jsonl"
    write_questions(data, tmp_path, ids=[f"q{i}" for i in range(12)])
    assert profile(model, data, db, "--task", "colours") == 0
    before = read_atoms(db)["accuracy"].item()
    write_questions(data, tmp_path, ids=[f"q{i}" for i in range(12)],
                    answer_of=lambda name: "red" if name != "red" else "blue")
    assert profile(model, data, db, "--task", "colours") == 0
    assert len(read_runs(db)) == 2
    shown = read_atoms(db)
    assert len(shown) == 1
    after = shown["accuracy"].item()
    assert after != before
    assert table_sizes(db)["layer_atoms"] == 2, "the older run is kept in the store, out of the view"


def test_edited_weights_are_a_new_run(world, tmp_path):
    root, model = world
    copy = tmp_path / "tiny-llava"
    shutil.copytree(model, copy)
    first = model_identity(str(copy))
    weights = next(copy.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    second = model_identity(str(copy))
    assert first["path"] == second["path"] and first["weights"] != second["weights"]
    assert model_identity(str(copy) + "/") == second


def test_a_hub_id_is_keyed_by_the_commit_its_cached_files_came_from(world, tmp_path, monkeypatch):
    root, model = world
    commit = "0123456789abcdef0123456789abcdef01234567"
    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--tiny-llava" / "snapshots" / commit
    shutil.copytree(model, snapshot)
    (cache / "models--someone--tiny-llava" / "refs").mkdir()
    (cache / "models--someone--tiny-llava" / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    identity = model_identity("someone/tiny-llava")
    assert identity == {"hub": "someone/tiny-llava", "revision": commit,
                        "weights": model_identity(str(snapshot))["weights"]}
    assert model_identity("someone/absent")["weights"] == ""


def test_checkpoints_in_the_readme_layout_are_one_model_on_the_timeline(world, tmp_path):
    root, model = world
    db = tmp_path / "r.duckdb"
    for step in (1000, 5000):
        folder = tmp_path / "ckpt" / f"stage2-step{step}"
        shutil.copytree(model, folder)
        assert profile(folder, root / "colours.jsonl", db, "--task", "colours", "--checkpoint", f"stage2-step{step}",
                       "--checkpoint-step", str(step), "--stage", "2") == 0
    shown = read_atoms(db)
    assert shown["model"].tolist() == ["ckpt", "ckpt"] and sorted(shown["step"]) == [1000, 5000]
    assert profile(tmp_path / "ckpt" / "stage2-step1000", root / "colours.jsonl", db, "--task", "colours",
                   "--name", "my-llava") == 0
    assert "my-llava" in set(read_atoms(db)["model"])
