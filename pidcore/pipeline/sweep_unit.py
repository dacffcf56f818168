"""The worker side of a sweep: probe one unit into its own shard, then fit its layers from that shard; the same
code in this process or on Ray (the probes in a model's actor, the fits in CPU tasks).

A worker never opens the sweep's database. It profiles into its shard (a results database of its own, which
`profile` resumes after a lost worker), leaves a marker naming its host and process while it runs, and returns
what it did; the driver merges the shard.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from transformers.utils.logging import disable_progress_bar

from pidcore.models.loading import LoadedVLM, load_vlm
from pidcore.pipeline.gaussian_layers import estimate_gaussian_layers
from pidcore.pipeline.layers import estimate_layers
from pidcore.pipeline.profiling import probe_run
from pidcore.pipeline.settings import ProfileSettings


@dataclass(frozen=True)
class UnitJob:
    """What a worker needs: the unit's settings (identities resolved by the plan, `db` its shard) and the
    estimator modes to fit."""

    settings: ProfileSettings
    modes: tuple[str, ...]
    run_id: str

    @property
    def shard(self) -> Path:
        return Path(self.settings.db)

    @property
    def marker(self) -> Path:
        """The file that says, while the unit runs, which host and process run it."""
        return self.shard.with_suffix(".running")


@dataclass(frozen=True)
class Worker:
    """Where a step of a unit ran: host, process, Ray node and actor (None: a Ray task, or no Ray) and Ray GPUs."""

    host: str
    pid: int
    node: str | None
    actor: str | None
    gpus: tuple[str, ...]


@dataclass(frozen=True)
class ProbedUnit:
    """A unit whose probe outputs are in its shard: its settings with the identities resolved, where it was probed,
    how many models that process had loaded by then (this one included) and the seconds it took."""

    settings: ProfileSettings
    worker: Worker
    model_loads: int
    seconds: float


@dataclass(frozen=True)
class UnitOutcome:
    """A finished unit: its run id, where it was probed and where fitted, the probing process's model loads, and
    the seconds each step took."""

    run_id: str
    probed: ProbedUnit
    fitted_by: Worker
    fit_seconds: float


def model_key(settings: ProfileSettings) -> tuple:
    """What makes a loaded model: the units with one key share one load."""
    return (settings.model, settings.revision, settings.device, settings.dtype, settings.trust_remote_code,
            settings.spread)


class ModelCache:
    """The one model a process keeps loaded between units, so a model is loaded once for all its datasets (the
    sweep hands a worker a model's units one after another) rather than once per unit; `loads` counts the loads."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._vlm: LoadedVLM | None = None
        self.loads = 0

    def get(self, settings: ProfileSettings) -> LoadedVLM:
        """The model these settings load, loading it (and dropping the previous one) when it is another."""
        key = model_key(settings)
        if key != self._key:
            self._vlm = None
            self._vlm = load_vlm(settings.model, settings.device, settings.dtype, settings.trust_remote_code,
                                 settings.revision, spread=settings.spread)
            self._key = key
            self.loads += 1
        return self._vlm


def this_worker() -> Worker:
    """This process as a Worker, with its Ray node, actor and GPUs where it is a Ray worker."""
    ray = sys.modules.get("ray")
    node = actor = None
    gpus: tuple[str, ...] = ()
    if ray is not None and ray.is_initialized():
        context = ray.get_runtime_context()
        node, actor = context.get_node_id(), context.get_actor_id()
        gpus = tuple(str(gpu) for gpu in ray.get_gpu_ids())
    return Worker(socket.gethostname(), os.getpid(), node, actor, gpus)


@contextmanager
def _marked(job: UnitJob) -> Iterator[None]:
    """The unit's marker while a step runs here; its shard folder must be here (shared storage on a cluster)."""
    if not job.shard.parent.is_dir():
        raise FileNotFoundError(f"the shard folder {job.shard.parent} does not exist on {socket.gethostname()}; on "
                                "a cluster, put the sweep's database and shards on storage every node mounts at the "
                                "same path")
    job.marker.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}))
    try:
        yield
    finally:
        job.marker.unlink(missing_ok=True)


def probe_unit(job: UnitJob, models: ModelCache) -> ProbedUnit:
    """Store the unit's probe outputs in its shard, the model from `models` (kept for the model's next unit); the
    run id must be the planned one."""
    started = time.time()
    disable_progress_bar()
    with _marked(job):
        settings, run_id = probe_run(job.settings, models.get(job.settings))
    if run_id != job.run_id:
        raise ValueError(f"unit {settings.model_name} / {settings.task_name} resolved to run {run_id}, not the "
                         f"planned {job.run_id}; plan the sweep again")
    return ProbedUnit(settings, this_worker(), models.loads, time.time() - started)


def fit_unit(job: UnitJob, probed: ProbedUnit) -> UnitOutcome:
    """Fit every estimator mode (and the Gaussian PID with hidden states) on the probe outputs in the unit's shard;
    needs no model, so on Ray it runs in a CPU task while the model's actor probes its next dataset."""
    started = time.time()
    with _marked(job):
        for mode in job.modes:
            estimate_layers(replace(probed.settings, estimator_mode=mode), job.run_id)
        if probed.settings.hidden_states:
            estimate_gaussian_layers(probed.settings, job.run_id)
    return UnitOutcome(job.run_id, probed, this_worker(), time.time() - started)


def run_unit(job: UnitJob, models: ModelCache | None = None) -> UnitOutcome:
    """Probe the unit and fit it, here; the model comes from `models` when given (kept for the next unit), else
    it is loaded for this unit alone."""
    return fit_unit(job, probe_unit(job, models or ModelCache()))
