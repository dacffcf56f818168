"""The worker side of a sweep: run one unit into its own shard, the same code in this process or on a Ray worker.

A worker never opens the sweep's database. It profiles into its shard (a results database of its own, which
`profile` resumes after a lost worker), leaves a marker naming its host and process while it runs, and returns
what it did; the driver merges the shard.
"""

from __future__ import annotations

import json
import os
import socket
import time
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
class UnitOutcome:
    """A finished unit: its run id, where it ran and how long it took."""

    run_id: str
    host: str
    pid: int
    seconds: float


class ModelCache:
    """The one model a process keeps loaded between units, so a sweep on one machine loads each model once for all
    its datasets rather than once per unit."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._vlm: LoadedVLM | None = None

    def get(self, settings: ProfileSettings) -> LoadedVLM:
        """The model these settings load, loading it (and dropping the previous one) when it is another."""
        key = (settings.model, settings.revision, settings.device, settings.dtype, settings.trust_remote_code,
               settings.spread)
        if key != self._key:
            self._vlm = None
            self._vlm = load_vlm(settings.model, settings.device, settings.dtype, settings.trust_remote_code,
                                 settings.revision, spread=settings.spread)
            self._key = key
        return self._vlm


def run_unit(job: UnitJob, models: ModelCache | None = None) -> UnitOutcome:
    """Profile the unit into its shard and fit every estimator mode; the model comes from `models` when given
    (kept for the next unit), else it is loaded for this unit alone."""
    started = time.time()
    disable_progress_bar()
    if not job.shard.parent.is_dir():
        raise FileNotFoundError(f"the shard folder {job.shard.parent} does not exist on {socket.gethostname()}; on "
                                "a cluster, put the sweep's database and shards on storage every node mounts at the "
                                "same path")
    job.marker.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": started}))
    try:
        settings, run_id = probe_run(job.settings, models.get(job.settings) if models else None)
        if run_id != job.run_id:
            raise ValueError(f"unit {settings.model_name} / {settings.task_name} resolved to run {run_id}, not the "
                             f"planned {job.run_id}; plan the sweep again")
        for mode in job.modes:
            estimate_layers(replace(settings, estimator_mode=mode), run_id)
        if settings.hidden_states:
            estimate_gaussian_layers(settings, run_id)
    finally:
        job.marker.unlink(missing_ok=True)
    return UnitOutcome(job.run_id, socket.gethostname(), os.getpid(), time.time() - started)
