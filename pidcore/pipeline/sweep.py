"""`pidcore sweep`: run a sweep file's units one after another here, or on Ray over GPUs and nodes.

The driver plans the units, hands each missing one to a worker (this process, or on Ray a model's actor for the
probes and a CPU task for the fits, pidcore.pipeline.sweep_ray), and merges each finished unit's shard into the
database in short keyed transactions, deleting the shard once it is in. Started again, a sweep skips the units the
database holds, merges finished shards and resumes the rest from their shards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from tqdm import tqdm

from pidcore.pipeline.sweep_file import Sweep
from pidcore.pipeline.sweep_identity import IdentityCache, in_process
from pidcore.pipeline.sweep_plan import DONE, MERGE, PlannedUnit, plan
from pidcore.pipeline.sweep_ray import Finish, across_ray, connect, run_on_ray
from pidcore.pipeline.sweep_unit import ModelCache, UnitOutcome, model_key, run_unit
from pidcore.store import ensure_schema
from pidcore.store.merge import merge_shard

logger = logging.getLogger(__name__)


@dataclass
class SweepResult:
    """What a sweep did: units done (merged now or before), each failed unit with its reason, and how each unit
    run now went (where it was probed and fitted)."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, UnitOutcome] = field(default_factory=dict)


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
    ray = None if ray_address is None else connect(ray_address)
    identities = IdentityCache(sweep.shards)
    planned = plan(sweep, identities=identities, across=in_process if ray is None else across_ray(ray))
    ensure_schema(sweep.db)
    sweep.shards.mkdir(parents=True, exist_ok=True)
    identities.save()
    result = SweepResult(done=[item.unit.label for item in planned if item.status == DONE])
    bar = _Progress(len(planned), len(result.done), progress)
    try:
        for item in planned:
            if item.status == MERGE:
                _merge(sweep, item, result, bar)
        todo = [item for item in planned if item.status not in (DONE, MERGE)]
        finish = _finisher(sweep, identities, result, bar)
        if ray is None:
            _run_here(sweep, todo, finish, bar)
        else:
            run_on_ray(ray, sweep.shards, todo, finish, bar.set_running)
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


def _finisher(sweep: Sweep, identities: IdentityCache, result: SweepResult, bar: _Progress) -> Finish:
    """What happens when a unit ends: merged when it succeeded; recorded with its reason when it failed, and its
    kept identities forgotten (it may have failed on files changed under an unchanged stamp)."""
    def finish(item: PlannedUnit, outcome: UnitOutcome | BaseException) -> None:
        if isinstance(outcome, UnitOutcome):
            result.outcomes[item.unit.label] = outcome
            _merge(sweep, item, result, bar)
            return
        result.failed[item.unit.label] = f"{type(outcome).__name__}: {outcome}"
        logger.error("%s failed: %s", item.unit.label, result.failed[item.unit.label])
        identities.forget(item.unit.settings)
        identities.save()
        bar.finished(False)

    return finish


def _run_here(sweep: Sweep, todo: list[PlannedUnit], finish: Finish, bar: _Progress) -> None:
    """The embedded default: each unit in this process, a model's units one after another, so one ModelCache loads
    each model once for all its datasets."""
    models = ModelCache()
    order = {key: index for index, key in enumerate(dict.fromkeys(model_key(item.unit.settings) for item in todo))}
    for item in sorted(todo, key=lambda item: order[model_key(item.unit.settings)]):
        bar.set_running(1)
        try:
            outcome = run_unit(item.job(sweep.shards), models)
        except Exception as error:  # a unit's failure is reported at the end; the sweep goes on
            bar.set_running(0)
            finish(item, error)
            continue
        bar.set_running(0)
        finish(item, outcome)
