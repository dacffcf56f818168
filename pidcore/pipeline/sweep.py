"""`pidcore sweep`: run a sweep file's units one after another here, or as Ray tasks over GPUs and nodes.

The driver plans the units, hands each missing one to a worker (this process, or a Ray task with the unit's GPUs),
and merges each finished unit's shard into the database in short keyed transactions, deleting the shard once it
is in. Started again, a sweep skips the units the database holds, merges finished shards and resumes the rest from
their shards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tqdm import tqdm

from pidcore.pipeline.sweep_file import Sweep
from pidcore.pipeline.sweep_plan import DONE, MERGE, PlannedUnit, plan
from pidcore.pipeline.sweep_unit import ModelCache, UnitJob, run_unit
from pidcore.store import ensure_schema
from pidcore.store.merge import merge_shard

logger = logging.getLogger(__name__)

# Retries of a unit whose Ray worker died (a killed process, a lost node); an error the unit raises is not retried.
WORKER_RETRIES = 3


@dataclass
class SweepResult:
    """What a sweep did: units done (merged now or before), and each failed unit with its reason."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class _Progress:
    """One bar for the sweep, its postfix the units done, running and failed."""

    def __init__(self, total: int, done: int, show: bool) -> None:
        self.bar = tqdm(total=total, initial=done, desc="sweep", unit="unit", disable=not show)
        self.running = 0
        self.failed = 0
        self._show()

    def _show(self) -> None:
        self.bar.set_postfix_str(f"done {self.bar.n}, running {self.running}, failed {self.failed}")

    def set_running(self, running: int) -> None:
        if running != self.running:
            self.running = running
            self._show()

    def finished(self, ok: bool) -> None:
        if ok:
            self.bar.update(1)
        else:
            self.failed += 1
        self._show()

    def close(self) -> None:
        self.bar.close()


def run_sweep(sweep: Sweep, ray_address: str | None = None, progress: bool = True) -> SweepResult:
    """Run every unit the database lacks, merging each as it finishes; `ray_address` None runs them here one after
    another, else on Ray ("local" starts a cluster on this machine, "auto" joins the running one, or an
    address). A Ray cluster initialised already in this process is used as it is."""
    planned = plan(sweep)
    ensure_schema(sweep.db)
    sweep.shards.mkdir(parents=True, exist_ok=True)
    result = SweepResult(done=[item.unit.label for item in planned if item.status == DONE])
    bar = _Progress(len(planned), len(result.done), progress)
    try:
        for item in planned:
            if item.status == MERGE:
                _merge(sweep, item, result, bar)
        todo = [item for item in planned if item.status not in (DONE, MERGE)]
        finish = _finisher(sweep, result, bar)
        if ray_address is None:
            _run_here(sweep, todo, finish, bar)
        else:
            _run_on_ray(sweep, todo, ray_address, finish, bar)
    finally:
        bar.close()
    return result


def _merge(sweep: Sweep, item: PlannedUnit, result: SweepResult, bar: _Progress) -> None:
    """Merge a finished unit's shard into the database, then delete the shard."""
    shard = item.job(sweep.shards).shard
    added = merge_shard(shard, sweep.db)
    logger.info("%s: merged %d rows from %s", item.unit.label, added, shard.name)
    for path in (shard, shard.with_name(shard.name + ".wal")):
        path.unlink(missing_ok=True)
    result.done.append(item.unit.label)
    bar.finished(True)


def _finisher(sweep: Sweep, result: SweepResult,
              bar: _Progress) -> Callable[[PlannedUnit, BaseException | None], None]:
    """What happens when a unit ends: merged when it succeeded, recorded with its reason when it failed."""
    def finish(item: PlannedUnit, error: BaseException | None) -> None:
        if error is None:
            _merge(sweep, item, result, bar)
            return
        result.failed[item.unit.label] = f"{type(error).__name__}: {error}"
        logger.error("%s failed: %s", item.unit.label, result.failed[item.unit.label])
        bar.finished(False)

    return finish


def _run_here(sweep: Sweep, todo: Iterable[PlannedUnit], finish: Callable[[PlannedUnit, BaseException | None], None],
              bar: _Progress) -> None:
    """The embedded default: each unit in this process, in order, a model kept loaded for its next units."""
    models = ModelCache()
    for item in todo:
        bar.set_running(1)
        try:
            run_unit(item.job(sweep.shards), models)
        except Exception as error:  # a unit's failure is reported at the end; the sweep goes on
            bar.set_running(0)
            finish(item, error)
            continue
        bar.set_running(0)
        finish(item, None)


def _run_on_ray(sweep: Sweep, todo: list[PlannedUnit], address: str,
                finish: Callable[[PlannedUnit, BaseException | None], None], bar: _Progress) -> None:
    """Each unit a Ray task with its GPUs (by default one where the cluster has GPUs), retried when its worker
    dies; results are merged here as they arrive. A GPU unit runs in a worker process of its own, which frees the
    GPU's memory when it ends; CPU units share worker processes, which saves starting one per unit."""
    ray = _ray(address)
    largest = max((node["Resources"].get("GPU", 0) for node in ray.nodes() if node["Alive"]), default=0)
    on_gpus, on_cpus = ray.remote(max_calls=1)(run_unit), ray.remote(run_unit)
    pending = {}
    for item in todo:
        gpus = item.unit.gpus if item.unit.gpus is not None else int(largest > 0)
        if gpus > largest:
            finish(item, ValueError(f"it asks for {gpus} GPUs and the cluster's largest node has {largest:g}; "
                                    "a unit runs on one node"))
            continue
        options = {"num_gpus": gpus, "max_retries": WORKER_RETRIES, "retry_exceptions": False,
                   "name": f"pidcore unit {item.unit.label}"}
        remote = on_gpus if gpus else on_cpus
        pending[remote.options(**options).remote(item.job(sweep.shards))] = item
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        bar.set_running(sum(_is_running(item.job(sweep.shards)) for item in pending.values()))
        for ref in ready:
            item = pending.pop(ref)
            try:
                ray.get(ref)
            except ray.exceptions.RayTaskError as error:
                finish(item, error.cause if isinstance(error.cause, BaseException) else error)
                continue
            except ray.exceptions.RayError as error:
                finish(item, error)
                continue
            finish(item, None)


def _is_running(job: UnitJob) -> bool:
    return job.marker.is_file()


def _ray(address: str):
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

