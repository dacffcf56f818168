"""A reduced `demo build` (two tiny models, a few steps) end to end through the command line, built one `--only`
model at a time."""

import os
import subprocess
import sys

import pytest

from pidcore.datasets.shapes import TASKS
from pidcore.demo.zoo import QUICK_SCHEDULE, QUICK_ZOO
from pidcore.models.loading import load_vlm
from pidcore.pipeline.settings import DEFAULT_ESTIMATOR
from pidcore.store import read_atoms
from tests.cli_run import run_cli


@pytest.fixture(scope="module")
def quick_build(tmp_path_factory):
    """The quick world built in two steps, `--only` the first model and then `--only` the second into the same
    folder; with the second step's output and the first model's rows as the first step stored them."""
    out = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    first_rows = None
    for spec in QUICK_ZOO:
        done = subprocess.run([sys.executable, "-m", "pidcore", "demo", "build", "--quick", "--out", str(out),
                               "--only", spec.name], capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        first_rows = read_atoms(out / "results.duckdb") if first_rows is None else first_rows
    return out, done, first_rows


def test_every_model_task_layer_and_checkpoint_is_stored(quick_build):
    out, _, _ = quick_build
    atoms = read_atoms(out / "results.duckdb")
    checkpoints = 1 + QUICK_SCHEDULE.stage1.checkpoints + QUICK_SCHEDULE.stage2.checkpoints
    for spec in QUICK_ZOO:
        rows = atoms[(atoms["model"] == spec.name) & (atoms["estimator"] == DEFAULT_ESTIMATOR)]
        calibrated = atoms[(atoms["model"] == spec.name) & (atoms["estimator"] == "batch-calibrated")]
        assert len(calibrated) == len(rows)
        assert set(rows["family"]) == {spec.family}
        assert rows["checkpoint"].nunique() == checkpoints
        assert set(rows["stage"]) == {"1", "2"}
        assert len(rows) == checkpoints * len(TASKS) * (spec.layers + 1)
        layers = rows.groupby(["task", "checkpoint"])["layer"]
        assert all(sorted(group) == list(range(spec.layers + 1)) for _, group in layers)
    assert not (out / "results.duckdb.building").exists()


def test_final_models_are_shipped_loadable(quick_build):
    out, _, _ = quick_build
    for spec in QUICK_ZOO:
        vlm = load_vlm(str(out / "models" / spec.name), device="cpu")
        assert vlm.adapter.family == spec.family


def test_the_summary_reports_accuracy_exact_pid_and_patterns(quick_build):
    out, done, _ = quick_build
    summary = (out / "demo_summary.md").read_text()
    assert summary in done.stdout
    assert "Probe conventions of every run: clean (" in summary
    assert "| synergy | S | 0.000 | 0.000 | 0.000 | 1.000 |" in summary
    assert "| language | U2 | 0.000 | 0.000 | 2.000 | 0.000 |" in summary
    for spec in QUICK_ZOO:
        assert f"- {spec.family}: three-phase layer pattern in" in summary
        assert summary.count(f"| {spec.name} | {spec.family} |") == 2 * len(TASKS)


def test_quick_needs_an_explicit_out_folder():
    done = run_cli("demo", "build", "--quick")
    assert done.returncode == 2 and "give --out" in done.stderr


def test_only_builds_the_named_model_and_keeps_the_others(quick_build):
    out, _, first_rows = quick_build
    after = read_atoms(out / "results.duckdb")
    columns = ["model", "estimator", "task", "checkpoint", "layer", "r", "u1", "u2", "s"]
    key = ["estimator", "task", "checkpoint", "layer"]
    kept, built = QUICK_ZOO[0].name, QUICK_ZOO[1].name
    assert set(first_rows["model"]) == {kept}
    assert after[after["model"] == kept][columns].sort_values(key).reset_index(drop=True).equals(
        first_rows[columns].sort_values(key).reset_index(drop=True))
    assert len(after[after["model"] == built]) == len(first_rows) * (QUICK_ZOO[1].layers + 1) // (
        QUICK_ZOO[0].layers + 1)
