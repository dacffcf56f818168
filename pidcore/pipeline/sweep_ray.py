"""A sweep on Ray: per model one actor that loads the model once and probes its datasets one after another, the
layer fits of each probed unit in a CPU task (no GPU, no model) so the actor moves on to the next dataset, and the
plan's missing identities computed in CPU tasks so the head node loads no dataset and hashes no weights.

Each actor asks Ray for what its model needs (see `unit_request`, the one sizing rule), and Ray places it where
that is free, or has its autoscaler start a node that gives it; a unit is refused at once only when no node the
cluster has or its autoscaler can start could ever hold it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pidcore.pipeline.settings import ProfileSettings
from pidcore.pipeline.sweep_identity import Across
from pidcore.pipeline.sweep_plan import PlannedUnit
from pidcore.pipeline.sweep_unit import ModelCache, ProbedUnit, UnitJob, UnitOutcome, fit_unit, model_key, probe_unit

# Retries of a unit whose Ray worker died (a killed process, a lost node): a model's actor is restarted and its
# pending probes retried this often, and so is a fit task; an error the unit raises is not retried.
WORKER_RETRIES = 3
# The sizing rule, from W, the bytes of the model's safetensors files: its actor asks for host memory BASE_MEMORY +
# W x HOST_MEMORY_PER_WEIGHT_BYTE (on CPU the weights may be upcast from 16 to 32 bits: 2; on GPUs they only pass
# through host memory as they load: 1), and a CPU unit for a CPU per WEIGHT_BYTES_PER_CPU of weights (at least 1, at
# most the largest node's), a GPU unit for 1. A model whose weights are not here (a hub id not downloaded on this
# node) asks for BASE_MEMORY and 1 CPU. A fit task, or a plan's identity task, asks for TASK_CPUS and no GPU.
BASE_MEMORY = 1 << 30
HOST_MEMORY_PER_WEIGHT_BYTE = {"cpu": 2, "gpu": 1}
WEIGHT_BYTES_PER_CPU = 2 << 30
TASK_CPUS = 1
# How long the driver waits for a result before it updates the progress bar.
POLL_SECONDS = 1.0

Finish = Callable[[PlannedUnit, UnitOutcome | BaseException], None]


@dataclass(frozen=True)
class NodeLimits:
    """The most of each resource one node has, over the running nodes and the node types the autoscaler can
    start (None: unknown, some node type does not say); `autoscaled` where the autoscaler published node types."""

    gpus: float
    cpus: float | None
    memory: float | None
    autoscaled: bool


@dataclass(frozen=True)
class Request:
    """What a model's actor asks Ray for."""

    gpus: int
    cpus: int
    memory: int


class ProbeWorker:
    """A model's probing process on Ray (an actor): the model is loaded once, for every unit handed to it."""

    def __init__(self, threads: int) -> None:
        torch.set_num_threads(threads)
        self.models = ModelCache()

    def probe(self, job: UnitJob) -> ProbedUnit:
        return probe_unit(job, self.models)


def connect(address: str) -> Any:
    """The ray module with a cluster to run on: the one this process joined already, else the one `address` names."""
    try:
        import ray
    except ImportError as error:
        raise ValueError("--ray needs Ray, which the core package leaves out: pip install 'pidcore[scale]'") from error
    if not ray.is_initialized():
        try:
            ray.init(address=None if address == "local" else address)
        except ConnectionError as error:
            raise ValueError(f"cannot reach a Ray cluster at {address!r}: {error} (start one with `ray start "
                             "--head`, or use --ray local)") from error
    return ray


def across_ray(ray: Any) -> Across:
    """`Across` as CPU tasks on the cluster (they need the sweep's files at the same paths, as every worker does)."""
    def across(fn: Callable[..., Any], calls: list[tuple]) -> list[Any]:
        remote = ray.remote(num_cpus=TASK_CPUS, num_gpus=0)(fn)
        return ray.get([remote.remote(*args) for args in calls])

    return across


def node_limits(ray: Any) -> NodeLimits:
    """The largest node's resources, over the running nodes and the autoscaler's node types (that can start)."""
    nodes = [dict(node["Resources"]) for node in ray.nodes() if node["Alive"]]
    types = _node_types(ray)

    def largest(key: str) -> float | None:
        if any(key not in resources for resources in types):
            return None
        return max((resources.get(key, 0) for resources in nodes + types), default=0)

    return NodeLimits(max((resources.get("GPU", 0) for resources in nodes + types), default=0), largest("CPU"),
                      largest("memory"), bool(types))


def _node_types(ray: Any) -> list[dict[str, float]]:
    """The resources of each node type the autoscaler can start (none without an autoscaler). Ray publishes them
    only through its private state API; a Ray without it is treated as a cluster of its running nodes."""
    try:
        config = ray._private.state.state.get_cluster_config()
    except AttributeError:
        return []
    if config is None:
        return []
    return [dict(group.resources) for group in config.node_group_configs if group.max_count != 0]


def weights_bytes(model: str, revision: str | None) -> int | None:
    """The bytes of a model's safetensors files: its folder's, or its hub snapshot's where one is here; else None."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(model, revision=revision, local_files_only=True))
        except (OSError, ValueError):
            return None
    return sum(path.stat().st_size for path in folder.glob("*.safetensors"))


def unit_request(settings: ProfileSettings, gpus: int | None, limits: NodeLimits) -> Request:
    """What a model's actor asks for, by the sizing rule above; `gpus` None: one where a node has or can get GPUs.
    A request that no node can ever hold is a ValueError saying so."""
    gpus = int(limits.gpus >= 1) if gpus is None else gpus
    weights = weights_bytes(settings.model, settings.revision) or 0
    cpus = 1 if gpus else max(1, math.ceil(weights / WEIGHT_BYTES_PER_CPU))
    cpus = cpus if limits.cpus is None else max(1, min(cpus, int(limits.cpus)))
    memory = BASE_MEMORY + weights * HOST_MEMORY_PER_WEIGHT_BYTE["gpu" if gpus else "cpu"]
    where = "the largest node this cluster has or its autoscaler can start" if limits.autoscaled else (
        "the cluster's largest node (it has no autoscaler to start others)")
    if gpus > limits.gpus:
        raise ValueError(f"it asks for {gpus} GPUs and {where} has {limits.gpus:g}; a unit runs on one node")
    if limits.memory is not None and memory > limits.memory:
        raise ValueError(f"it asks for {memory / (1 << 30):.1f} GiB of memory (the sizing rule of "
                         f"pidcore.pipeline.sweep_ray) and {where} has {limits.memory / (1 << 30):.1f} GiB")
    return Request(gpus, cpus, memory)


def run_on_ray(ray: Any, shards: Path, todo: list[PlannedUnit], finish: Finish,
               set_running: Callable[[int], None]) -> None:
    """Run the units: per model an actor probing its units in order, each probed unit's fits in a CPU task, each
    result handed to `finish` as it arrives; a model's actor ends once its last unit is probed, which frees its
    GPUs' memory for the next model."""
    limits = node_limits(ray)
    worker, fit = ray.remote(ProbeWorker), ray.remote(fit_unit)
    groups: dict[tuple, list[PlannedUnit]] = {}
    for item in todo:
        groups.setdefault(model_key(item.unit.settings), []).append(item)
    pending: dict[Any, tuple[PlannedUnit, tuple]] = {}
    actors: dict[tuple, list] = {}
    for key, items in groups.items():
        try:
            request = unit_request(items[0].unit.settings, items[0].unit.gpus, limits)
        except ValueError as error:
            for item in items:
                finish(item, error)
            continue
        actor = worker.options(num_gpus=request.gpus, num_cpus=request.cpus, memory=request.memory,
                               max_restarts=WORKER_RETRIES, max_task_retries=WORKER_RETRIES).remote(request.cpus)
        actors[key] = [actor, len(items)]
        for item in items:
            pending[actor.probe.remote(item.job(shards))] = (item, key)
    fits: dict[Any, PlannedUnit] = {}
    while pending or fits:
        ready, _ = ray.wait([*pending, *fits], num_returns=1, timeout=POLL_SECONDS)
        running = [*fits.values(), *(item for item, _ in pending.values())]
        set_running(sum(item.job(shards).marker.is_file() for item in running))
        for ref in ready:
            if ref in fits:
                finish(fits.pop(ref), _result(ray, ref))
                continue
            item, key = pending.pop(ref)
            probed = _result(ray, ref)
            if isinstance(probed, BaseException):
                finish(item, probed)
            else:
                fits[fit.options(num_cpus=TASK_CPUS, num_gpus=0, max_retries=WORKER_RETRIES,
                                 retry_exceptions=False).remote(item.job(shards), probed)] = item
            actors[key][1] -= 1
            if not actors[key][1]:
                ray.kill(actors[key][0])


def _result(ray: Any, ref: Any) -> Any:
    """A finished Ray call's value, or the error it ended with (the unit's own error where it raised one)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        return error.cause if isinstance(error.cause, BaseException) else error
    except ray.exceptions.RayError as error:
        return error
