"""A sweep's plan: each unit's run id, what the database and the unit's shard already hold, and the work left.

The plan resolves every model's and dataset's identity once, on the driver, before any model loads, so the run id
of each unit (and so its shard's name, and whether the database holds it already) is known up front; workers check
that they see the same files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from pidcore.datasets import load_dataset
from pidcore.datasets.fingerprint import dataset_fingerprint
from pidcore.models.identity import identity_key, model_identity
from pidcore.pipeline.layers import selected_layers
from pidcore.pipeline.sweep_file import Sweep, Unit
from pidcore.pipeline.sweep_unit import UnitJob
from pidcore.probes.conventions import CLEAN
from pidcore.store import RunProgress, read_progress

logger = logging.getLogger(__name__)

# What a unit needs, in the order the plan lists them.
DONE, MERGE, RESUME, RUN = "done", "merge", "resume", "run"
STATUSES = (DONE, MERGE, RESUME, RUN)


@dataclass(frozen=True)
class PlannedUnit:
    """A unit with its run id, what it needs (one of STATUSES), its dataset's size, the samples its shard holds,
    its depth where known, and the layer fits (layer x estimator) left."""

    unit: Unit
    run_id: str
    status: str
    n_samples: int
    probed: int
    n_layers: int | None
    fits_left: int | None

    def job(self, shards: Path) -> UnitJob:
        """What a worker needs to run this unit into its shard."""
        return UnitJob(replace(self.unit.settings, db=str(shard_path(shards, self.run_id))), self.unit.modes,
                       self.run_id)


def shard_path(shards: Path, run_id: str) -> Path:
    """A unit's shard: a results database named by the unit's run id."""
    return shards / f"{run_id}.duckdb"


def plan(sweep: Sweep) -> list[PlannedUnit]:
    """Every unit of the sweep with its run id and what it needs, from the database and the shards."""
    identified = _identified(sweep.units)
    run_ids = [unit.settings.run_id() for unit, _ in identified]
    _check_distinct_runs([unit for unit, _ in identified], run_ids)
    merged = read_progress(sweep.db, run_ids)
    planned = []
    for (unit, n_samples), run_id in zip(identified, run_ids):
        shard = read_progress(shard_path(sweep.shards, run_id), [run_id]).get(run_id)
        planned.append(_planned(unit, run_id, n_samples, merged.get(run_id), shard))
    return planned


def _check_distinct_runs(units: list[Unit], run_ids: list[str]) -> None:
    """Two units with one run id (the same model files, dataset and settings under two names) would store one run
    under the first name only; an error naming both."""
    first: dict[str, Unit] = {}
    for unit, run_id in zip(units, run_ids):
        if run_id in first:
            raise ValueError(f"{unit.label} is the same run as {first[run_id].label} (the same model files, dataset "
                             "and settings); list each model once")
        first[run_id] = unit


def _identified(units: list[Unit]) -> list[tuple[Unit, int]]:
    """Each unit with its model's and dataset's identities filled in, and its dataset's sample count; each model and
    each dataset is read once."""
    models: dict[tuple, str] = {}
    datasets: dict[tuple, tuple[str, int]] = {}
    found = []
    for unit in units:
        settings = unit.settings
        model_key = (settings.model, settings.revision)
        if model_key not in models:
            models[model_key] = identity_key(model_identity(*model_key))
        data_key = (settings.dataset, settings.limit, settings.dedupe, settings.image_dir, settings.probes != CLEAN)
        if data_key not in datasets:
            dataset = load_dataset(settings.dataset, limit=settings.limit, image_root=settings.image_dir,
                                   dedupe=settings.dedupe)
            datasets[data_key] = (dataset_fingerprint(dataset, paper_inputs=data_key[-1]), len(dataset.samples))
        content, n_samples = datasets[data_key]
        settings = replace(settings, model_identity=models[model_key], dataset_identity=content)
        found.append((replace(unit, settings=settings), n_samples))
    return found


def _planned(unit: Unit, run_id: str, n_samples: int, merged: RunProgress | None,
             shard: RunProgress | None) -> PlannedUnit:
    """A unit's status: done when the database holds every layer of every estimator it asks for; else merge when
    its shard does; else resume when the shard holds part of it; else run."""
    known = merged or shard
    n_layers = known.n_layers if known else config_depth(unit.settings.model, unit.settings.revision)
    if merged and _fits_left(unit, merged, n_samples) == 0:
        return PlannedUnit(unit, run_id, DONE, n_samples, n_samples, n_layers, 0)
    if shard and _fits_left(unit, shard, n_samples) == 0:
        return PlannedUnit(unit, run_id, MERGE, n_samples, n_samples, n_layers, 0)
    if shard:
        fits = _fits_left(unit, shard, n_samples)
    else:
        fits = None if n_layers is None else len(selected_layers(unit.settings.layers, n_layers)) * len(unit.modes)
    return PlannedUnit(unit, run_id, RESUME if shard else RUN, n_samples, shard.samples if shard else 0, n_layers,
                       fits)


def config_depth(model: str, revision: str | None) -> int | None:
    """A model's decoder depth from its config where a local copy has one, without loading weights; else None."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model, revision=revision, local_files_only=True)
    except (OSError, ValueError):
        return None
    return getattr(config.get_text_config(), "num_hidden_layers", None)


def _fits_left(unit: Unit, progress: RunProgress, n_samples: int) -> int:
    """Layer fits (layer x estimator) a database still lacks for this unit; every one while samples are missing."""
    wanted = selected_layers(unit.settings.layers, progress.n_layers)
    if progress.samples < n_samples:
        return len(wanted) * len(unit.modes)
    return sum(len(set(wanted) - progress.layers.get(estimator, set())) for estimator in unit.estimators)


def describe(sweep: Sweep, planned: list[PlannedUnit]) -> str:
    """The plan as text: one line per unit with what it needs, then the totals and the work left."""
    width = max(len(item.unit.label) for item in planned)
    lines = [f"sweep {sweep.path}: {len(planned)} units into {sweep.db} (shards in {sweep.shards})",
             f"{'status':8s} {'model / checkpoint / task':{width}s} {'samples probed':>15s} {'layer fits left':>16s}"
             f"  run id"]
    for item in planned:
        fits = "?" if item.fits_left is None else str(item.fits_left)
        lines.append(f"{item.status:8s} {item.unit.label:{width}s} {f'{item.probed}/{item.n_samples}':>15s} "
                     f"{fits:>16s}  {item.run_id}")
    counts = {status: sum(item.status == status for item in planned) for status in STATUSES}
    missing = len(planned) - counts[DONE]
    to_probe = sum(item.n_samples - item.probed for item in planned)
    fits = [item.fits_left for item in planned if item.status != DONE]
    fit_text = f"{sum(f for f in fits if f is not None)} layer fits" + (
        f" (plus the layers of {sum(f is None for f in fits)} units whose depth is known once their model loads)"
        if None in fits else "")
    lines.append(f"{counts[DONE]} done, {missing} missing: {counts[MERGE]} to merge, {counts[RESUME]} to resume, "
                 f"{counts[RUN]} to run; work left: {to_probe} samples to probe (3 rows each), {fit_text}")
    return "\n".join(lines)
