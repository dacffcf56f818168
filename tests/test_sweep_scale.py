"""Sweeps that scale: each model loaded once for all its datasets (here and on Ray), the fits run in CPU tasks
outside the model's actor, a two-node Ray cluster stores the rows the sequential sweep does, resources are sized
from the model, a GPU check that knows the autoscaler's node types, and a plan that reloads nothing it has seen."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import torch

import pidcore.pipeline.sweep_identity as sweep_identity
import pidcore.pipeline.sweep_unit as sweep_unit
from pidcore.pipeline.sweep import run_sweep
from pidcore.pipeline.sweep_file import read_sweep
from pidcore.pipeline.sweep_identity import IDENTITY_FILE, IdentityCache
from pidcore.pipeline.sweep_plan import plan
from pidcore.pipeline.sweep_ray import BASE_MEMORY, NodeLimits, node_limits, unit_request
from tests.sweep_world import build_world, rows, write_sweep

# The units of the sweep without checkpoints: two models x two datasets.
SMALL_UNITS = 4
# Seconds a local Ray node may take to start before the cluster test is skipped.
RAY_START_SECONDS = 90
# Each node's object store (the sweep passes only small objects).
OBJECT_STORE_BYTES = 200 << 20
RAY = shutil.which("ray")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return build_world(tmp_path_factory.mktemp("sweep-scale"))


@pytest.fixture(scope="module")
def sequential(world) -> tuple[Path, Counter, dict]:
    """The two-model sweep one unit after another in this process (torch on one thread, as Ray's workers), with
    the models each load_vlm call loaded, and the sweep's outcomes."""
    loads: Counter = Counter()
    original = sweep_unit.load_vlm

    def counted(model: str, *args, **kwargs):
        loads.update([Path(model).name])
        return original(model, *args, **kwargs)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweep_unit, "load_vlm", counted)
        result = run_sweep(read_sweep(write_sweep(world, "sequential.duckdb", checkpoints=False)), progress=False)
    torch.set_num_threads(threads)
    assert not result.failed and len(result.done) == SMALL_UNITS
    return world / "sequential.duckdb", loads, result.outcomes


def test_the_sequential_sweep_loads_each_model_once_for_its_datasets(sequential):
    _, loads, outcomes = sequential
    assert loads == {"tiny-llava": 1, "tiny-qwen": 1}
    assert sorted(outcome.probed.model_loads for outcome in outcomes.values()) == [1, 1, 2, 2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _our_processes(folder: str) -> list[int]:
    """The processes whose command line names our cluster's temp folder (ours alone: a fresh folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and folder in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[str]:
    """A local Ray cluster of two nodes of one CPU each (`ray start`, in a temp folder); skipped where it cannot
    start; torn down by the processes it started (never `ray stop`, which would stop every Ray here)."""
    if RAY is None:
        pytest.skip("no `ray` command here")
    folder = tempfile.mkdtemp(prefix="pidray-", dir="/tmp")  # short: Ray's socket paths must stay short
    address = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}
    common = ["--block", "--num-cpus", "1", "--num-gpus", "0", "--object-store-memory", str(OBJECT_STORE_BYTES),
              "--temp-dir", folder, "--disable-usage-stats"]
    head = [RAY, "start", "--head", "--port", address.split(":")[1], "--include-dashboard", "false",
            "--resources", '{"node_a": 1}', "--node-ip-address", "127.0.0.1"]
    other = [RAY, "start", "--address", address, "--resources", '{"node_b": 1}', "--node-ip-address", "127.0.0.1"]
    started = []
    try:
        for command in (head, other):
            started.append(subprocess.Popen(command + common, env=env, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True))
            if command is head:
                _wait_for(lambda: _listening(address), "the head node")
        ray.init(address=address, log_to_driver=False)
        _wait_for(lambda: sum(node["Alive"] for node in ray.nodes()) == 2, "the second node")
        yield address
    except (OSError, TimeoutError) as error:
        pytest.skip(f"a local two-node Ray cluster cannot start here: {error}")
    finally:
        ray.shutdown()
        for process in started:
            _end(process.pid)
        for pid in _our_processes(folder):
            _end(pid)
        shutil.rmtree(folder, ignore_errors=True)


def _listening(address: str) -> bool:
    host, port = address.split(":")
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) == 0


def _wait_for(ready, what: str) -> None:
    deadline = time.time() + RAY_START_SECONDS
    while not ready():
        if time.time() > deadline:
            raise TimeoutError(f"{what} did not start in {RAY_START_SECONDS} s")
        time.sleep(0.5)


def _end(pid: int) -> None:
    """SIGTERM a process we started (its group where it leads one), then SIGKILL it if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)
        except ProcessLookupError:
            return
        time.sleep(1)


# The sweep's driver, run in its own process as `pidcore sweep --ray ADDRESS` is: a process that joined another Ray
# cluster before (this test process joins the tests' local one) does not export its actor classes to a second one.
DRIVER = """
import dataclasses, json, sys
from pidcore.pipeline.sweep import run_sweep
from pidcore.pipeline.sweep_file import read_sweep
result = run_sweep(read_sweep(sys.argv[1]), sys.argv[2], progress=False)
outcomes = {label: dataclasses.asdict(outcome) for label, outcome in result.outcomes.items()}
print(json.dumps({"done": result.done, "failed": result.failed, "outcomes": outcomes}, default=str))
"""


def test_two_ray_nodes_store_the_sequential_rows_each_model_loaded_once_and_fits_outside_its_actor(
        world, sequential, two_nodes):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}
    driver = subprocess.run([sys.executable, "-c", DRIVER, str(write_sweep(world, "two-nodes.duckdb",
                                                                           checkpoints=False)), two_nodes],
                            capture_output=True, text=True, env=env, timeout=600)
    assert driver.returncode == 0, driver.stderr[-3000:]
    result = json.loads(driver.stdout.strip().splitlines()[-1])
    assert not result["failed"] and len(result["done"]) == SMALL_UNITS, result["failed"]
    assert rows(world / "two-nodes.duckdb") == rows(sequential[0])
    by_model: dict[str, set] = {}
    for label, outcome in result["outcomes"].items():
        probed, fitted = outcome["probed"]["worker"], outcome["fitted_by"]
        by_model.setdefault(label.split(" / ")[0], set()).add(probed["actor"])
        assert probed["actor"] is not None and outcome["probed"]["model_loads"] == 1, label
        assert fitted["actor"] is None and not fitted["gpus"] and fitted["pid"] != probed["pid"], label
    assert all(len(actors) == 1 for actors in by_model.values()), "one actor (one load) per model"
    nodes = {outcome["probed"]["worker"]["node"] for outcome in result["outcomes"].values()}
    assert len(nodes) == 2, "the two models' actors, a CPU each, ran on both one-CPU nodes"


def test_a_gpu_check_counts_the_autoscalers_node_types_not_only_the_running_nodes(two_nodes, world):
    from ray._raylet import GCS_AUTOSCALER_CLUSTER_CONFIG_KEY, GCS_AUTOSCALER_STATE_NAMESPACE
    from ray.core.generated.autoscaler_pb2 import ClusterConfig, NodeGroupConfig
    from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_put

    settings = read_sweep(write_sweep(world, "gpus.duckdb", checkpoints=False)).units[0].settings
    fixed = node_limits(ray)
    assert (fixed.gpus, fixed.cpus, fixed.autoscaled) == (0, 1, False)
    assert unit_request(settings, None, fixed).gpus == 0
    with pytest.raises(ValueError, match=r"asks for 1 GPUs and the cluster's largest node \(it has no autoscaler"):
        unit_request(settings, 1, fixed)
    gpu_type = NodeGroupConfig(name="gpu-node", resources={"CPU": 8, "GPU": 4, "memory": 64 << 30}, max_count=2)
    config = ClusterConfig(node_group_configs=[gpu_type])
    _internal_kv_put(GCS_AUTOSCALER_CLUSTER_CONFIG_KEY, config.SerializeToString(),
                     namespace=GCS_AUTOSCALER_STATE_NAMESPACE)
    try:
        scaling = node_limits(ray)
    finally:
        _internal_kv_del(GCS_AUTOSCALER_CLUSTER_CONFIG_KEY, namespace=GCS_AUTOSCALER_STATE_NAMESPACE)
    assert (scaling.gpus, scaling.cpus, scaling.autoscaled) == (4, 8, True)
    assert unit_request(settings, None, scaling).gpus == 1, "no GPU node is up, but the autoscaler can start one"
    assert unit_request(settings, 4, scaling).gpus == 4
    with pytest.raises(ValueError, match="asks for 8 GPUs and the largest node this cluster has or its autoscaler "
                                         "can start has 4"):
        unit_request(settings, 8, scaling)


def test_requests_are_sized_from_the_models_weights(world):
    settings = read_sweep(write_sweep(world, "sizes.duckdb", checkpoints=False)).units[0].settings
    weights = sum(path.stat().st_size for path in Path(settings.model).glob("*.safetensors"))
    roomy = NodeLimits(gpus=8, cpus=64, memory=1 << 40, autoscaled=False)
    on_cpu, on_gpu = unit_request(settings, 0, roomy), unit_request(settings, 2, roomy)
    assert (on_cpu.cpus, on_cpu.memory) == (1, BASE_MEMORY + 2 * weights)
    assert (on_gpu.gpus, on_gpu.cpus, on_gpu.memory) == (2, 1, BASE_MEMORY + weights)
    big = 40 << 30
    assert unit_request(settings, 0, roomy).cpus == 1
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("pidcore.pipeline.sweep_ray.weights_bytes", lambda model, revision: big)
        assert unit_request(settings, 0, roomy).cpus == 20, "a CPU per 2 GiB of weights"
        assert unit_request(settings, 0, NodeLimits(0, 4, 1 << 40, False)).cpus == 4, "at most the largest node's"
        with pytest.raises(ValueError, match="GiB of memory"):
            unit_request(settings, 0, NodeLimits(0, 4, 16 << 30, False))


def test_a_plan_again_reads_no_dataset_and_hashes_no_model_and_keeps_the_run_ids(world, sequential, monkeypatch):
    sweep = read_sweep(write_sweep(world, "sequential.duckdb", checkpoints=False))
    assert (sweep.shards / IDENTITY_FILE).is_file(), "the sweep kept its identities"
    kept = IdentityCache(sweep.shards)  # again: the models were built too recently to be kept by the sweep
    first = [item.run_id for item in plan(sweep, identities=kept)]
    kept.save()
    assert first == [item.run_id for item in plan(sweep, identities=IdentityCache(None))], "kept as computed"

    def refuse(*args, **kwargs):
        raise AssertionError("loaded or hashed again")

    monkeypatch.setattr(sweep_identity, "load_dataset", refuse)
    monkeypatch.setattr(sweep_identity, "model_identity", refuse)
    again = plan(sweep)
    assert [item.run_id for item in again] == first and {item.status for item in again} == {"done"}
    kept = IdentityCache(sweep.shards)
    kept.forget(sweep.units[0].settings)
    with pytest.raises(AssertionError, match="loaded or hashed again"):
        plan(sweep, identities=kept)
