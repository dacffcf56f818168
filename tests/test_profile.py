"""`python -m pidcore profile` on a tiny LLaVA: every layer stored, resumable after SIGKILL, readable meanwhile."""

import os
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from pidcore.atoms import ATOMS
from pidcore.cli import main
from pidcore.models.tiny import build_tiny_model
from pidcore.store import StoreError, load_samples, read_atoms, read_runs, table_sizes
from tests.colour_files import write_colour_task


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("profile")
    model = build_tiny_model("llava", root / "tiny-llava")
    write_colour_task(root, "shapes.jsonl", 160, lambda i: "What colour is the shape?")
    return root, model


def _command(setup, db, limit):
    root, model = setup
    return [sys.executable, "-m", "pidcore", "profile", "--model", str(model), "--dataset",
            f"jsonl:{root / 'shapes.jsonl'}", "--db", str(db), "--device", "cpu", "--limit", str(limit),
            "--bootstrap", "20"]


def _env():
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _rows(db):
    """Every stored sample's probe outputs, every layer's atoms and the number of per-sample atoms, comparable."""
    samples = [(row.sample_id, row.probs.tobytes()) for run_id in read_runs(db)["run_id"]
               for row in load_samples(db, run_id)]
    atoms = read_atoms(db).sort_values("layer")[["layer", *ATOMS]].values.tolist()
    return sorted(samples), atoms, table_sizes(db)["pointwise_atoms"]


@pytest.fixture(scope="module")
def uninterrupted(setup):
    db = setup[0] / "clean.duckdb"
    done = subprocess.run(_command(setup, db, 160), capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return db, done.stdout


def test_profile_stores_an_atoms_row_for_every_layer(uninterrupted):
    db, stdout = uninterrupted
    atoms = read_atoms(db)
    assert sorted(atoms["layer"]) == [0, 1, 2]
    assert set(atoms["n_layers"]) == {2} and set(atoms["family"]) == {"llava"}
    assert atoms["accuracy"].notna().all()
    assert "layer" in stdout and "bits" in stdout


def test_rerun_adds_nothing(setup, uninterrupted):
    db, _ = uninterrupted
    before = _rows(db)
    done = subprocess.run(_command(setup, db, 160), capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0
    assert _rows(db) == before


def test_sigkill_then_rerun_gives_the_same_results(setup, uninterrupted):
    db = setup[0] / "killed.duckdb"
    process = subprocess.Popen(_command(setup, db, 160), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=_env())
    read_while_running = _wait_for_samples(db, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = len(_rows(db)[0])
    assert 0 < partial < 160, partial
    assert read_while_running
    done = subprocess.run(_command(setup, db, 160), capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _rows(db) == _rows(uninterrupted[0])


def _wait_for_samples(db, process, timeout=120):
    """Poll the database read-only while profile runs; True once some samples were readable."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            count = table_sizes(db, attempts=1).get("samples", 0)
        except (StoreError, duckdb.Error):
            time.sleep(0.05)
            continue
        if count >= 16:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "idefics3", "paligemma"])
def test_profile_runs_end_to_end_on_other_families(setup, tmp_path, family):
    """Through the command line's entry point in this process (the subprocess runs above cover the interpreter)."""
    root, _ = setup
    assert main(["tiny-model", "--family", family, "--out", str(tmp_path / family)]) == 0
    db = tmp_path / "results.duckdb"
    assert main(["profile", "--model", str(tmp_path / family), "--dataset", f"jsonl:{root / 'shapes.jsonl'}", "--db",
                 str(db), "--device", "cpu", "--limit", "24", "--bootstrap", "0"]) == 0
    atoms = read_atoms(db)
    assert sorted(atoms["layer"]) == [0, 1, 2] and set(atoms["family"]) == {family}


def test_batch_size_changes_no_stored_row_on_mixed_lengths(setup, tmp_path):
    """Questions of four lengths, one sample per forward against six (sorted by length, padded): the same rows."""
    _, model = setup
    data = write_colour_task(tmp_path, "mixed.jsonl", 20, lambda i: "What colour is the shape?" + " Look." * (i % 4),
                             with_ids=True)
    stored = {}
    for size in (1, 6):
        db = tmp_path / f"batch{size}.duckdb"
        assert main(["profile", "--model", str(model), "--dataset", f"jsonl:{data}", "--db", str(db), "--device",
                     "cpu", "--bootstrap", "0", "--batch-size", str(size)]) == 0
        (run_id,) = read_runs(db)["run_id"]
        stored[size] = run_id, {row.sample_id: (row.position, row.probs) for row in load_samples(db, run_id)}
    assert stored[1][0] == stored[6][0]
    one, six = stored[1][1], stored[6][1]
    assert sorted(one) == sorted(six) == sorted(f"q{i}" for i in range(20))
    for sample_id, (position, probs) in one.items():
        assert six[sample_id][0] == position
        assert abs(probs - six[sample_id][1]).max() < 1e-4
