"""A sweep's plan: each unit's run id, what the database and the unit's shard already hold, and the work left;
for a dry run also which models can be profiled here.

The plan resolves every model's and dataset's identity once, before any model loads, so the run id of each unit
(and so its shard's name, and whether the database holds it already) is known up front; workers check that they
see the same files. The identities come from the shard folder's cache where the files are unchanged, else are
computed `across` this process or a Ray cluster (pidcore.pipeline.sweep_identity). A dry run also lists the
units of a dataset that cannot be read (a run id needs the dataset's content), so one missing download does not
hide the rest of the plan.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from pidcore.datasets.registry import parse_spec
from pidcore.datasets.sample import DatasetError
from pidcore.models.adapters import CONVERTED, adapter_for
from pidcore.models.loading import declared_model_type
from pidcore.pipeline.layers import selected_layers
from pidcore.pipeline.sweep_file import Sweep, Unit
from pidcore.pipeline.sweep_identity import (
    DATASETS,
    MODELS,
    Across,
    IdentityCache,
    data_key,
    dataset_stamp,
    identify_dataset,
    identify_model,
    in_process,
    model_stamp,
)
from pidcore.pipeline.sweep_unit import UnitJob
from pidcore.store import RunProgress, read_progress

logger = logging.getLogger(__name__)

# What a unit needs, in the order the plan lists them; a dry run's units whose dataset cannot be read are NO_DATASET.
DONE, MERGE, RESUME, RUN = "done", "merge", "resume", "run"
STATUSES = (DONE, MERGE, RESUME, RUN)
NO_DATASET = "no dataset"
# A model whose type neither a local copy of its config nor its sweep file's model_type gives.
UNKNOWN_TYPE = "unknown until its config is fetched"


@dataclass(frozen=True)
class PlannedUnit:
    """A unit with its run id, what it needs (one of STATUSES, or NO_DATASET), its dataset's size, the samples its
    shard holds, its depth where known, and the layer fits (layer x estimator) left. A NO_DATASET unit has no run
    id and no size (both need the dataset's content) and carries the loader's message in dataset_error."""

    unit: Unit
    run_id: str | None
    status: str
    n_samples: int | None
    probed: int
    n_layers: int | None
    fits_left: int | None
    dataset_error: str | None = None

    def job(self, shards: Path) -> UnitJob:
        """What a worker needs to run this unit into its shard."""
        if self.run_id is None:
            raise ValueError(f"{self.unit.label} cannot run: {self.dataset_error}")
        return UnitJob(replace(self.unit.settings, db=str(shard_path(shards, self.run_id))), self.unit.modes,
                       self.run_id)


@dataclass(frozen=True)
class ModelCheck:
    """Whether one model of a sweep can be profiled here: its model type (None: unknown), where that came from, and
    why not (None: it can)."""

    name: str
    model_type: str | None
    source: str
    reason: str | None


def shard_path(shards: Path, run_id: str) -> Path:
    """A unit's shard: a results database named by the unit's run id."""
    return shards / f"{run_id}.duckdb"


def plan(sweep: Sweep, unreadable_ok: bool = False, identities: IdentityCache | None = None,
         across: Across = in_process) -> list[PlannedUnit]:
    """Every unit of the sweep with its run id and what it needs, from the database and the shards. A dataset that
    cannot be read is an error (a sweep never runs on half a plan), unless `unreadable_ok` (a dry run): then its
    units are NO_DATASET, with the loader's message. Identities come from `identities` (default: the shard folder's,
    read only) where kept, else are computed `across` and added to it."""
    identities = identities or IdentityCache(sweep.shards)
    datasets = _read_datasets(sweep.units, unreadable_ok, identities, across)
    identified = _identified([unit for unit in sweep.units if not isinstance(datasets[data_key(unit.settings)], str)],
                             datasets, identities, across)
    run_ids = [unit.settings.run_id() for unit, _ in identified]
    _check_distinct_runs([unit for unit, _ in identified], run_ids)
    merged = read_progress(sweep.db, run_ids)
    planned = {}
    for (unit, n_samples), run_id in zip(identified, run_ids):
        shard = read_progress(shard_path(sweep.shards, run_id), [run_id]).get(run_id)
        planned[unit.label] = _planned(unit, run_id, n_samples, merged.get(run_id), shard)
    return [planned.get(unit.label) or PlannedUnit(unit, None, NO_DATASET, None, 0, None, None,
                                                   dataset_error=datasets[data_key(unit.settings)])
            for unit in sweep.units]


def _check_distinct_runs(units: list[Unit], run_ids: list[str]) -> None:
    """Two units with one run id (the same model files, dataset and settings under two names) would store one run
    under the first name only; an error naming both."""
    first: dict[str, Unit] = {}
    for unit, run_id in zip(units, run_ids):
        if run_id in first:
            raise ValueError(f"{unit.label} is the same run as {first[run_id].label} (the same model files, dataset "
                             "and settings); list each model once")
        first[run_id] = unit


def _read_datasets(units: list[Unit], unreadable_ok: bool, identities: IdentityCache,
                   across: Across) -> dict[tuple, tuple[str, int] | str]:
    """Each dataset of the units: its content fingerprint and sample count (kept, else read once `across`), or
    where it cannot be read and `unreadable_ok`, the loader's message (else a DatasetError with it)."""
    datasets: dict[tuple, tuple[str, int] | str] = {}
    stamps = {}
    for unit in units:
        key = data_key(unit.settings)
        if key not in stamps:
            stamps[key] = dataset_stamp(key)
            datasets[key] = identities.get(DATASETS, stamps[key])
    missing = [key for key, identity in datasets.items() if identity is None]
    for key, identity in zip(missing, across(identify_dataset, [(key,) for key in missing])):
        if isinstance(identity, str) and not unreadable_ok:
            raise DatasetError(identity)
        datasets[key] = identity
        if not isinstance(identity, str):
            identities.put(DATASETS, stamps[key], identity)
    return datasets


def _identified(units: list[Unit], datasets: dict[tuple, tuple[str, int] | str], identities: IdentityCache,
                across: Across) -> list[tuple[Unit, int]]:
    """Each unit with its model's and dataset's identities filled in, and its dataset's sample count; each model is
    identified once: a kept folder's from its stamp, a hub id's here (as `profile` would), the others `across`."""
    models: dict[tuple, str | None] = {}
    stamps = {}
    for unit in units:
        key = (unit.settings.model, unit.settings.revision)
        if key not in stamps:
            stamps[key] = model_stamp(*key)
            models[key] = identities.get(MODELS, stamps[key])
            if stamps[key] is None:
                models[key] = identify_model(*key)
    missing = [key for key, identity in models.items() if identity is None]
    for key, identity in zip(missing, across(identify_model, missing)):
        models[key] = identity
        identities.put(MODELS, stamps[key], identity)
    found = []
    for unit in units:
        content, n_samples = datasets[data_key(unit.settings)]
        settings = replace(unit.settings, model_identity=models[(unit.settings.model, unit.settings.revision)],
                           dataset_identity=content)
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
        layers = None if n_layers is None else len(selected_layers(unit.settings.layers, n_layers))
        fits = None if layers is None else layers * len(unit.estimators)
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
        return len(wanted) * len(unit.estimators)
    return sum(len(set(wanted) - progress.layers.get(estimator, set())) for estimator in unit.estimators)


def check_models(sweep: Sweep) -> list[ModelCheck]:
    """Each model of the sweep (by its final weights; its checkpoints are of its family) and whether it can be
    profiled here: its type from a local copy of its config, else its sweep file's model_type, judged by
    pidcore.models.adapters.adapter_for; with neither, UNKNOWN_TYPE."""
    checks: dict[str, ModelCheck] = {}
    for unit in sweep.units:
        name = unit.settings.model_name
        if name not in checks:
            checks[name] = _check_model(name, unit)
    return list(checks.values())


def _check_model(name: str, unit: Unit) -> ModelCheck:
    """One model's check (see check_models)."""
    model_type = declared_model_type(unit.settings.model, unit.settings.revision)
    if model_type is not None:
        declared = unit.model_type
        source = "its config" + ("" if declared in (None, model_type) else f"; the sweep file says {declared!r}")
    elif unit.model_type is not None:
        model_type, source = unit.model_type, "the sweep file's model_type"
    else:
        return ModelCheck(name, None, "no local config, no model_type in the sweep file", UNKNOWN_TYPE)
    try:
        adapter_for(model_type)
    except ValueError as error:
        return ModelCheck(name, model_type, source, str(error))
    if model_type in CONVERTED:
        source += f"; converted to the native {CONVERTED[model_type].family} family on first load, once"
    return ModelCheck(name, model_type, source, None)


def describe(sweep: Sweep, planned: list[PlannedUnit], models: list[ModelCheck]) -> str:
    """The plan as text: each dataset (read, or why not), one line per unit with what it needs, the totals and the
    work left, then each model with whether it can be profiled here and the count."""
    width = max(len(item.unit.label) for item in planned)
    lines = [f"sweep {sweep.path}: {len(planned)} units into {sweep.db} (shards in {sweep.shards})", "datasets:",
             *_dataset_lines(planned),
             f"{'status':10s} {'model / checkpoint / task':{width}s} {'samples probed':>15s} {'layer fits left':>16s}"
             f"  run id"]
    for item in planned:
        fits = "?" if item.fits_left is None else str(item.fits_left)
        probed = "?" if item.n_samples is None else f"{item.probed}/{item.n_samples}"
        run_id = item.run_id or "none yet (a run id needs the dataset's content)"
        lines.append(f"{item.status:10s} {item.unit.label:{width}s} {probed:>15s} {fits:>16s}  {run_id}")
    lines.append(_totals(planned))
    return "\n".join(lines + _model_lines(models))


def _dataset_lines(planned: list[PlannedUnit]) -> list[str]:
    """One line per dataset (task): its sample count, or missing / unreadable with its spec and the loader's
    message."""
    lines: dict[str, str] = {}
    for item in planned:
        settings = item.unit.settings
        if settings.task_name in lines:
            continue
        if item.dataset_error is None:
            lines[settings.task_name] = f"  {'read':10s} {settings.task_name}: {item.n_samples} samples"
            continue
        missing = not parse_spec(settings.dataset)[1].exists()
        lines[settings.task_name] = (f"  {'missing' if missing else 'unreadable':10s} {settings.task_name} "
                                     f"({settings.dataset}): {item.dataset_error}")
    return list(lines.values())


def _totals(planned: list[PlannedUnit]) -> str:
    """The totals line: units by status and the work left."""
    counts = {status: sum(item.status == status for item in planned) for status in (*STATUSES, NO_DATASET)}
    missing = len(planned) - counts[DONE]
    to_probe = sum(item.n_samples - item.probed for item in planned if item.n_samples is not None)
    fits = [item.fits_left for item in planned if item.status not in (DONE, NO_DATASET)]
    fit_text = f"{sum(f for f in fits if f is not None)} layer fits" + (
        f" (plus the layers of {sum(f is None for f in fits)} units whose depth is known once their model loads)"
        if None in fits else "")
    waiting = f", {counts[NO_DATASET]} without their dataset" if counts[NO_DATASET] else ""
    unknown = (f", and all the work of the {counts[NO_DATASET]} units without their dataset (their run ids, samples "
               "and state are known once it is read)") if counts[NO_DATASET] else ""
    return (f"{counts[DONE]} done, {missing} missing: {counts[MERGE]} to merge, {counts[RESUME]} to resume, "
            f"{counts[RUN]} to run{waiting}; work left: {to_probe} samples to probe (3 rows each), {fit_text}{unknown}")


def _model_lines(models: list[ModelCheck]) -> list[str]:
    """The models section: one line per model (can it be profiled here, its type and where it came from, why not),
    then how many can, naming the others by type."""
    width = max(len(check.name) for check in models)
    lines = ["models (type from a local copy of the config, else the sweep file's model_type):"]
    for check in models:
        verdict = "unknown" if check.model_type is None else "no" if check.reason else "yes"
        what = check.model_type or "type unknown"
        lines.append(f"  {verdict:8s} {check.name:{width}s} {what} ({check.source})"
                     + (f": {check.reason}" if check.reason else ""))
    others: dict[str, list[str]] = {}
    for check in models:
        if check.reason:
            others.setdefault(check.model_type or "type unknown", []).append(check.name)
    runnable = len(models) - sum(len(names) for names in others.values())
    count = f"{runnable} of {len(models)} models can be profiled here"
    if others:
        count += "; the others: " + "; ".join(f"{', '.join(names)} ({kind})" for kind, names in others.items())
    return [*lines, count]
