"""`python -m pidcore import-paper`: stage-2 JSON files become one-layer runs in the `atoms` view."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pidcore.pipeline.stage2_import import PaperFileError, read_paper_file
from pidcore.store import read_atoms


def _vision_unique_records(n=400, seed=0):
    """y = the image's bit; the image-only probe knows it, the text-only probe is uniform."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        a, b = int(rng.integers(2)), int(rng.integers(2))
        x1 = np.eye(2)[a] + 0.05 * rng.standard_normal(2)
        x2 = np.eye(2)[b] + 0.05 * rng.standard_normal(2)
        knows = [0.95, 0.05] if a == 0 else [0.05, 0.95]
        records.append({"id": f"q{i}", "image_feature": x1.tolist(), "text_feature": x2.tolist(),
                        "p_y_x1": knows, "p_y_x2": [0.5, 0.5], "p_y_x1x2": knows, "answer": "AB"[a]})
    return records


def _run(*args):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pidcore", "import-paper", *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def stage2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("paper")
    records = _vision_unique_records()
    records[3] = {"id": "broken", "image_feature": [1.0, 0.0], "text_feature": [0.0, 1.0],
                  "p_y_x1": [0.7, 0.7], "p_y_x2": [0.5, 0.5], "p_y_x1x2": [0.5, 0.5]}
    records[5]["text_feature"] = [1.0, 2.0, 3.0]
    records[7] = "not a record"
    path = folder / "llava-1.5-7b_mmbench.json"
    path.write_text(json.dumps({"model": "llava-1.5-7b", "task": "MMBench", "family": "llava", "samples": records}))
    return folder, path


def test_import_stores_one_layer_with_the_planted_atoms(stage2):
    folder, path = stage2
    db = folder / "paper.duckdb"
    done = _run(str(path), "--db", str(db), "--n-layers", "32", "--stage", "2", "--checkpoint-step", "5000")
    assert done.returncode == 0, done.stderr[-2000:]
    atoms = read_atoms(db)
    assert len(atoms) == 1
    row = atoms.iloc[0]
    assert (row["model"], row["task"], row["family"]) == ("llava-1.5-7b", "MMBench", "llava")
    assert row["layer"] == row["n_layers"] == 32 and row["stage"] == "2" and row["step"] == 5000
    assert row["accuracy"] == pytest.approx(1.0)
    expected_u1 = 1 + 0.95 * np.log2(0.95) + 0.05 * np.log2(0.05)
    assert row["u1"] == pytest.approx(expected_u1, abs=0.03)
    assert abs(row["r"]) < 0.03 and abs(row["u2"]) < 0.03 and abs(row["s"]) < 0.03
    assert "skipped" in done.stderr and "broken" in done.stderr
    rerun = _run(str(path), "--db", str(db), "--n-layers", "32", "--stage", "2", "--checkpoint-step", "5000")
    assert rerun.returncode == 0 and read_atoms(db).equals(atoms)


def test_bad_records_are_skipped_with_reasons(stage2):
    run = read_paper_file(stage2[1])
    reasons = dict(run.skipped)
    assert set(reasons) == {"broken", "q5", "7"}
    assert "not a distribution" in reasons["broken"]
    assert "differ from the first record" in reasons["q5"]
    assert reasons["7"] == "not a JSON object"
    assert len(run.ids) == 397


def test_a_record_with_a_bad_answer_is_skipped_whole_and_later_labels_stay_aligned(tmp_path):
    records = _vision_unique_records(n=40)
    records[10]["answer"] = "Z"
    path = tmp_path / "m_task.json"
    path.write_text(json.dumps(records))
    run = read_paper_file(path)
    assert dict(run.skipped) == {"q10": "answer 'Z' is neither a letter A-B nor an index below 2"}
    assert len(run.ids) == len(run.gold) == len(run.x1) == 39
    assert run.gold == [int(np.argmax(probs[0, 0])) for probs in run.probs]


def test_a_bad_file_is_a_clear_error_and_the_good_file_still_lands(stage2, tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps([{"id": 1, "image_feature": [1]}]))
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\x00{not json")
    with pytest.raises(PaperFileError, match="no usable record.*missing x2"):
        read_paper_file(empty)
    db = tmp_path / "r.duckdb"
    done = _run(str(garbage), str(empty), str(stage2[1]), "--db", str(db))
    assert done.returncode == 2
    assert "garbage.json is not valid JSON" in done.stderr and "Traceback" not in done.stderr
    assert len(read_atoms(db)) == 1
