"""`profile` against bad inputs: each is refused with a clear one-line message and a non-zero exit, and a database
that already holds results keeps exactly the rows it had."""

import json
from pathlib import Path

import pytest
from PIL import Image

from pidcore.cli import main
from pidcore.models.tiny import build_tiny_model
from pidcore.store import read_atoms, table_sizes

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
