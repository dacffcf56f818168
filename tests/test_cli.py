"""The command line: `python -m pidcore ...` in a subprocess as a user would run it, and its entry point in this
process for the error cases."""

import os
import subprocess
import sys

import pytest
from transformers import AutoConfig

from pidcore.cli import main

from tests.cli_run import run_cli


def _run(*args):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "pidcore", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_tiny_model_builds_a_loadable_llava(tmp_path):
    done = _run("tiny-model", "--family", "llava", "--out", str(tmp_path / "m"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert AutoConfig.from_pretrained(str(tmp_path / "m")).model_type == "llava"


def test_tiny_model_rejects_an_unknown_family(tmp_path):
    done = run_cli("tiny-model", "--family", "nope", "--out", str(tmp_path / "m"))
    assert done.returncode == 2
    assert "no tiny-model builder for family 'nope'" in done.stderr


def test_profile_reports_an_unknown_model_and_a_missing_dataset_clearly(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    data = tmp_path / "q.jsonl"
    data.write_text('{"image": "a.png", "question": "Which?", "options": ["x", "y"]}\n')
    unknown = run_cli("profile", "--model", str(tmp_path / "no-such-model"), "--dataset", f"jsonl:{data}",
                      "--db", str(tmp_path / "r.duckdb"))
    assert unknown.returncode == 2
    assert "cannot load model" in unknown.stderr and "Traceback" not in unknown.stderr
    missing = run_cli("profile", "--model", str(tmp_path / "m"), "--dataset", f"jsonl:{tmp_path / 'none.jsonl'}",
                      "--db", str(tmp_path / "r.duckdb"))
    assert missing.returncode == 2 and "dataset file not found" in missing.stderr


def test_profile_refuses_a_batch_size_below_one(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["profile", "--model", str(tmp_path / "m"), "--dataset", "jsonl:x.jsonl", "--db",
              str(tmp_path / "r.duckdb"), "--batch-size", "0"])
    assert stopped.value.code == 2
    assert "--batch-size: must be at least 1, got 0" in capsys.readouterr().err
