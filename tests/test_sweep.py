"""`pidcore sweep` on two tiny models (one with three checkpoints over two stages) x two shapes tasks: the same rows
one after another here and as Ray tasks, after a Ray worker is SIGKILLed mid-unit, and after the driver is
SIGKILLed mid-unit or mid-merge; a dry run lists exactly the units the database lacks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest
import ray

from pidcore.atoms import ATOMS
from pidcore.models.tiny import build_tiny_model
from pidcore.pipeline.sweep import run_sweep
from pidcore.pipeline.sweep_file import read_sweep
from pidcore.pipeline.sweep_identity import IDENTITY_FILE
from pidcore.pipeline.sweep_plan import plan, shard_path
from pidcore.pipeline.sweep_unit import UnitJob, run_unit
from pidcore.store import StoreError, read_atoms, read_runs, table_sizes
from pidcore.store.write import delete_runs
from tests.sweep_world import UNITS, build_world, rows, write_sweep


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """The sweep folder with its models built."""
    return build_world(tmp_path_factory.mktemp("sweep"))


def sweep_command(path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pidcore", "sweep", str(path), *extra]


@pytest.fixture(scope="module")
def sequential(world) -> Path:
    """The uninterrupted sweep, one unit after another in one process (the embedded default)."""
    path = write_sweep(world, "sequential.duckdb")
    done = subprocess.run(sweep_command(path), capture_output=True, text=True, env=_env(), cwd=world, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{UNITS} of {UNITS} units done, 0 failed" in done.stdout
    return world / "sequential.duckdb"


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of two CPUs for this module."""
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def test_the_sequential_sweep_stores_every_unit_with_checkpoints_in_stages(sequential):
    atoms = read_atoms(sequential)
    assert len(atoms) == UNITS * 3  # every layer: embeddings, two decoder layers (the output)
    qwen = atoms[atoms["model"] == "tiny-qwen"]
    assert sorted(qwen["checkpoint"].unique()) == ["final", "stage1-step10", "stage2-step20", "stage2-step30"]
    steps = qwen.drop_duplicates("checkpoint").set_index("checkpoint")
    assert steps.loc["stage2-step20", "step"] == 20 and steps.loc["stage2-step20", "stage"] == "2"
    assert atoms[list(ATOMS)].notna().all().all()
    kept = [path.name for path in (sequential.parent / "sequential.duckdb.shards").glob("*")]
    assert kept == [IDENTITY_FILE], "merged shards are deleted; the plan's identities are kept"


def test_ray_tasks_store_the_same_rows_as_the_sequential_sweep(world, sequential, ray_cluster):
    result = run_sweep(read_sweep(write_sweep(world, "ray.duckdb")), ray_address="local", progress=False)
    assert not result.failed and len(result.done) == UNITS
    assert rows(world / "ray.duckdb") == rows(sequential)


def test_a_sigkilled_ray_worker_is_retried_and_the_rows_match(world, sequential, ray_cluster):
    sweep = read_sweep(write_sweep(world, "killed-worker.duckdb"))
    outcome = {}
    driver = threading.Thread(target=lambda: outcome.update(result=run_sweep(sweep, "local", progress=False)))
    driver.start()
    killed = _kill_a_worker_mid_unit(sweep.shards, driver)
    driver.join(timeout=900)
    assert killed, "no worker was caught with a unit part-way through"
    assert not outcome["result"].failed and len(outcome["result"].done) == UNITS
    assert rows(world / "killed-worker.duckdb") == rows(sequential)


def _kill_a_worker_mid_unit(shards: Path, driver: threading.Thread, timeout: float = 600) -> bool:
    """SIGKILL the process a running unit's marker names, once its shard holds some samples but not all."""
    deadline = time.time() + timeout
    while driver.is_alive() and time.time() < deadline:
        for marker in shards.glob("*.running"):
            try:
                samples = table_sizes(marker.with_suffix(".duckdb"), attempts=1).get("samples", 0)
                pid = int(json.loads(marker.read_text())["pid"])
            except (StoreError, duckdb.Error, OSError, ValueError, KeyError):
                continue
            if 0 < samples < 24:
                os.kill(pid, signal.SIGKILL)
                return True
        time.sleep(0.02)
    return False


KILL_ON_THIRD_BATCH = """
import os, signal, sys
import pidcore.store.merge as merge
batches = []
original = merge._merge_batch
def dying(target, table, rows):
    batches.append(table.name)
    if len(batches) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(target, table, rows)
merge._merge_batch = dying
from pidcore.cli import main
sys.exit(main(["sweep", sys.argv[1]]))
"""


def test_a_driver_killed_mid_merge_leaves_nothing_visible_and_a_rerun_gives_the_same_rows(world, sequential):
    db = world / "killed-driver.duckdb"
    first = _holding_all_but_the_first_unit(sequential, db)
    path = write_sweep(world, db.name)
    killed = subprocess.run([sys.executable, "-c", KILL_ON_THIRD_BATCH, str(path)], capture_output=True, text=True,
                            env=_env(), cwd=world, timeout=900)
    assert killed.returncode == -signal.SIGKILL
    sizes = table_sizes(db)
    assert sizes["calibration"] == UNITS and sizes["samples"] == 24 * UNITS and sizes["runs"] == UNITS - 1, sizes
    assert first not in set(read_runs(db)["run_id"]), "a run part-way merged is not on the pages"
    assert [item.status for item in plan(read_sweep(path))] == ["merge"] + ["done"] * (UNITS - 1)
    again = subprocess.run(sweep_command(path), capture_output=True, text=True, env=_env(), cwd=world, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert rows(db) == rows(sequential)


def _holding_all_but_the_first_unit(source: Path, db: Path) -> str:
    """A copy of a finished sweep's database without its first unit's run; returns that run's id."""
    shutil.copy(source, db)
    runs = read_runs(db)
    first = runs[(runs["model"] == "tiny-llava") & (runs["task"] == "synergy")]["run_id"].item()
    delete_runs(db, [first])
    return first


KILL_AFTER_FIRST_CHUNK = """
import os, signal, sys
import pidcore.pipeline.profiling as profiling
original = profiling.write_samples
def dying(db, rows):
    original(db, rows)
    os.kill(os.getpid(), signal.SIGKILL)
profiling.write_samples = dying
from pidcore.cli import main
sys.exit(main(["sweep", sys.argv[1]]))
"""


def test_a_sweep_killed_mid_unit_resumes_the_unit_from_its_shard(world, sequential):
    db = world / "killed-mid-unit.duckdb"
    _holding_all_but_the_first_unit(sequential, db)
    path = write_sweep(world, db.name)
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_CHUNK, str(path)], capture_output=True,
                            text=True, env=_env(), cwd=world, timeout=900)
    assert killed.returncode == -signal.SIGKILL
    first = plan(read_sweep(path))[0]
    assert (first.status, first.probed, first.n_samples) == ("resume", 4, 24)
    again = subprocess.run(sweep_command(path), capture_output=True, text=True, env=_env(), cwd=world, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert rows(db) == rows(sequential)


def test_a_dry_run_lists_exactly_the_units_the_database_lacks(world, sequential, tmp_path):
    db = world / "partial.duckdb"
    shutil.copy(sequential, db)
    runs = read_runs(db)
    dropped = runs[(runs["model"] == "tiny-qwen") & (runs["task"] == "language")]
    delete_runs(db, list(dropped["run_id"]))
    done = subprocess.run(sweep_command(write_sweep(world, "partial.duckdb"), "--dry-run"), capture_output=True,
                          text=True, env=_env(), cwd=world, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    listed = [line.split()[0:6] for line in done.stdout.splitlines() if line.startswith(("done ", "run "))]
    missing = sorted(" ".join(line[1:6]) for line in listed if line[0] != "done")
    assert missing == sorted(f"tiny-qwen / {checkpoint} / language" for checkpoint in dropped["checkpoint"])
    assert len(listed) == UNITS
    assert f"{UNITS - len(dropped)} done, {len(dropped)} missing: 0 to merge, 0 to resume, {len(dropped)} to run" \
        in done.stdout
    left = f"work left: {24 * len(dropped)} samples to probe (3 rows each), {3 * len(dropped)} layer fits"
    assert left in done.stdout
    lines = done.stdout.splitlines()
    assert "  read       synergy: 24 samples" in lines and "  read       language: 24 samples" in lines
    assert [line.split() for line in lines[-3:]] == [
        ["yes", "tiny-llava", "llava", "(its", "config)"], ["yes", "tiny-qwen", "qwen2_vl", "(its", "config)"],
        "2 of 2 models can be profiled here".split()]
    assert table_sizes(db)["runs"] == UNITS - len(dropped), "a dry run writes nothing"


def test_a_failing_unit_is_reported_with_its_reason_and_the_others_finish(world, sequential, ray_cluster):
    db = world / "failing.duckdb"
    _holding_all_but_the_first_unit(sequential, db)
    broken = '\n[[models]]\npath = "./models/missing"\nname = "missing"\n'
    result = run_sweep(read_sweep(write_sweep(world, db.name, broken)), "local", progress=False)
    assert sorted(result.failed) == ["missing / final / language", "missing / final / synergy"]
    assert all("ModelLoadError" in reason and "missing" in reason for reason in result.failed.values())
    assert len(result.done) == UNITS and "tiny-llava / final / synergy" in result.done
    cli = subprocess.run(sweep_command(world / "failing.toml"), capture_output=True, text=True, env=_env(),
                         cwd=world, timeout=600)
    assert cli.returncode == 1
    assert f"{UNITS} of {UNITS + 2} units done, 2 failed" in cli.stdout
    assert "failed missing / final / synergy: ModelLoadError: cannot load model" in cli.stderr


def test_a_unit_asking_for_more_gpus_than_a_node_has_fails_at_once(world, sequential, ray_cluster):
    db = world / "gpu-ask.duckdb"
    shutil.copy(sequential, db)
    build_tiny_model("llava", world / "models" / "gpu-llava", seed=5)
    asking = '\n[[models]]\npath = "models/gpu-llava"\nname = "needs-a-gpu"\ngpus = 1\n'
    result = run_sweep(read_sweep(write_sweep(world, db.name, asking)), "local", progress=False)
    assert sorted(result.failed) == ["needs-a-gpu / final / language", "needs-a-gpu / final / synergy"]
    assert all("asks for 1 GPUs and the cluster's largest node (it has no autoscaler to start others) has 0"
               in reason for reason in result.failed.values())
    assert len(result.done) == UNITS


def test_two_entries_that_are_one_run_are_refused_by_the_plan(world, sequential):
    again = '\n[[models]]\npath = "models/tiny-llava"\nname = "tiny-llava-again"\n'
    with pytest.raises(ValueError, match="tiny-llava-again / final / synergy is the same run as tiny-llava / final / "
                                         "synergy"):
        plan(read_sweep(write_sweep(world, "twice.duckdb", again)))


def test_a_worker_refuses_files_other_than_the_planned_ones(world, sequential, tmp_path):
    sweep = read_sweep(write_sweep(world, "moved.duckdb"))
    item = plan(sweep)[0]
    job = item.job(tmp_path)
    other = replace(job.settings, dataset_identity="another")
    with pytest.raises(ValueError, match="holds other samples than when the sweep was planned"):
        run_unit(UnitJob(other, job.modes, job.run_id))
    assert not shard_path(tmp_path, item.run_id).with_suffix(".running").exists()
