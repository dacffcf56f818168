"""Atoms for every layer of a run: BATCH fitted on the run's stored probe outputs, one layer per short write."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pidcore.atoms import ATOMS, FIT, LETTER_MASS_FALLBACK, PASSES
from pidcore.estimators import BatchPIDResult, batch_pid
from pidcore.estimators.batch import MIN_HELD_OUT, MIN_SAMPLES
from pidcore.pipeline.settings import ProfileSettings
from pidcore.store import (
    LayerResult,
    SampleRow,
    load_samples,
    read_layer_results,
    run_depth,
    stored_layers,
    write_layer,
)
from pidcore.store.blobs import stacked_blobs
from pidcore.store.read import load_sample_columns

logger = logging.getLogger(__name__)


@dataclass
class RunSamples:
    """A run's samples with the most common option count, stacked: probs [sample, pass, stored layer, k],
    letter mass [sample, pass, stored layer] (NaN where unknown), and each sample's split (None: not fixed)."""

    ids: list[str]
    gold: np.ndarray
    x1: np.ndarray
    x2: np.ndarray
    probs: np.ndarray
    mass: np.ndarray
    split: list[str | None]


def load_run_samples(db: str, run_id: str) -> RunSamples:
    """The run's stored samples; those with another option count than the most common one are left out, aloud.
    A run whose arrays have one stored shape each (one option count) is decoded a column at a time, any other row
    by row."""
    columns = load_sample_columns(db, run_id)
    arrays = {name: stacked_blobs(columns[name]) for name in _ARRAY_COLUMNS}
    mass = arrays["letter_mass"]
    if any(array is None for array in arrays.values()) or mass.shape[1:2] != (len(PASSES),) or mass.ndim not in (2, 3):
        return _run_samples(run_id, load_samples(db, run_id))
    probs = arrays["probs"].astype(np.float64)
    return RunSamples(columns["sample_id"], _gold_codes(columns["gold"]), arrays["x1"], arrays["x2"], probs,
                      _mass_by_layer(mass, probs.shape[2]), columns["split"])


_ARRAY_COLUMNS = ("x1", "x2", "probs", "letter_mass")


def _run_samples(run_id: str, rows: list[SampleRow]) -> RunSamples:
    """The run's samples decoded row by row, with the most common option count, the others left out aloud."""
    if not rows:
        raise ValueError(f"run {run_id} has no stored samples to estimate atoms from")
    k = Counter(row.n_options for row in rows).most_common(1)[0][0]
    kept = [row for row in rows if row.n_options == k]
    if len(kept) < len(rows):
        logger.warning("estimating on the %d samples with %d options; %d others left out", len(kept), k,
                       len(rows) - len(kept))
    probs = np.stack([row.probs for row in kept]).astype(np.float64)
    return RunSamples([row.sample_id for row in kept], _gold_codes([row.gold for row in kept]),
                      np.stack([row.x1 for row in kept]), np.stack([row.x2 for row in kept]), probs,
                      np.concatenate([_mass_by_layer(row.letter_mass[None], probs.shape[2]) for row in kept]),
                      [row.split for row in kept])


def _gold_codes(golds: list[int | None]) -> np.ndarray:
    """Gold option indices, -1 where a sample has none."""
    return np.array([-1 if gold is None else gold for gold in golds])


def _mass_by_layer(mass: np.ndarray, stored_layers: int) -> np.ndarray:
    """Letter mass [sample, pass, stored layer]; databases written before per-layer mass hold the output layer's
    only ([sample, pass]), the other layers NaN."""
    if mass.ndim == 3:
        return mass.astype(np.float64)
    by_layer = np.full((*mass.shape, stored_layers), np.nan)
    by_layer[..., -1] = mass
    return by_layer


LAYERS_FORMAT = "all, last, or a comma list of layer numbers from 0 (the embeddings) to the model's depth"


def parse_layers(spec: str, n_layers: int | None = None) -> list[int] | None:
    """The layer numbers of a comma-list spec, sorted (None for "all" and "last"), checked as far as what is known:
    the syntax and that none is negative always, the upper bound once the model's depth `n_layers` is given."""
    if spec in ("all", "last"):
        return None
    try:
        layers = sorted({int(part) for part in spec.split(",")})
    except ValueError:
        raise ValueError(f"layers {spec!r} is not {LAYERS_FORMAT}") from None
    bad = [layer for layer in layers if layer < 0 or (n_layers is not None and layer > n_layers)]
    if bad:
        upper = "the model's depth" if n_layers is None else str(n_layers)
        raise ValueError(f"layers {bad} in {spec!r} are outside 0..{upper} (0 = the embeddings)")
    return layers


def selected_layers(spec: str, n_layers: int) -> list[int]:
    """"all", "last", or a comma list of layer numbers (0 = embeddings, n_layers = the real output)."""
    if spec == "all":
        return list(range(n_layers + 1))
    if spec == "last":
        return [n_layers]
    return parse_layers(spec, n_layers)


def config_depth(model: str, revision: str | None = None, trust_remote_code: bool = False) -> int | None:
    """The decoder depth a local model folder's config gives (what probing finds: one layer per decoder block),
    read before the weights load; None where it cannot be told here (a hub id, a config that does not load)."""
    try:
        if not (Path(model).expanduser() / "config.json").is_file():
            return None
        from transformers import AutoConfig  # here: a process that only fits stored probes never imports it

        config = AutoConfig.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code)
        depth = getattr(config.get_text_config(), "num_hidden_layers", None)
    except Exception:  # noqa: BLE001 - the model's own load reports a config that does not load
        return None
    return depth if isinstance(depth, int) and depth > 0 else None


def check_layers(settings: ProfileSettings) -> None:
    """The run's layer spec checked before the model loads: its syntax, none negative, and none past the depth its
    config gives where that can be read here (a local folder), so a typo fails before every sample is probed."""
    depth = None if parse_layers(settings.layers) is None else config_depth(settings.model, settings.revision,
                                                                          settings.trust_remote_code)
    parse_layers(settings.layers, depth)


def check_sample_count(samples: list, dataset: str) -> None:
    """Refuse, before any model loads, a dataset with fewer samples of its most common option count than the
    estimator needs (pidcore.estimators.batch's MIN_SAMPLES, or MIN_HELD_OUT in the evaluation part of a split the
    dataset fixes)."""
    counts = Counter(len(sample.options) for sample in samples)
    if not counts:
        raise ValueError(f"dataset {dataset} holds no samples; the estimator needs at least {MIN_SAMPLES}")
    k, n = counts.most_common(1)[0]
    kept = [sample for sample in samples if len(sample.options) == k]
    which = f" with {k} options (the most common count)" if len(counts) > 1 else ""
    if any(sample.split is not None for sample in kept):
        fit = sum(sample.split == FIT for sample in kept)
        if fit < 1 or n - fit < MIN_HELD_OUT:
            raise ValueError(f"dataset {dataset} has {fit} fitting and {n - fit} evaluation sample(s){which}; the "
                             f"estimator needs at least 1 to fit and {MIN_HELD_OUT} to evaluate")
    elif n < MIN_SAMPLES:
        raise ValueError(f"dataset {dataset} has {n} usable sample(s){which}; the estimator needs at least "
                         f"{MIN_SAMPLES} to split into fitting and held-out sets")


def with_fallback(probs: np.ndarray, mass: np.ndarray, threshold: float) -> tuple[np.ndarray, dict]:
    """Probes [sample, pass, k] whose letter mass [sample, pass] is below `threshold` replaced by the uniform
    distribution over the k options (the published convention); with counts of what was replaced."""
    low = mass < threshold
    replaced = np.where(low[..., None], 1.0 / probs.shape[-1], probs)
    counts = {name: int(low[:, index].sum()) for index, name in enumerate(PASSES)}
    return replaced, {"threshold": threshold, "replaced": counts, "unknown_mass": int(np.isnan(mass).sum())}


def estimate_layers(settings: ProfileSettings, run_id: str) -> list[LayerResult]:
    """Fit BATCH per layer not yet stored; store dataset atoms with intervals, pointwise atoms and the fitted
    estimator; return the output layer's result.

    Stored probe outputs cover the run's last layers (all of them for `profile`, only the output for an
    imported run), so layer l sits at index l - first stored layer.
    """
    n_layers = run_depth(settings.db, run_id)
    samples = load_run_samples(settings.db, run_id)
    first_stored = n_layers + 1 - samples.probs.shape[2]
    done = stored_layers(settings.db, run_id, settings.estimator)
    selected = selected_layers(settings.layers, n_layers)
    unavailable = [layer for layer in selected if layer < first_stored]
    if unavailable and settings.layers != "all":
        raise ValueError(f"layers {unavailable} were not stored for this run; only {first_stored}..{n_layers} were")
    layers = [layer for layer in selected if layer >= first_stored and layer not in done]
    for layer in tqdm(layers, desc="estimating", unit="layer", disable=not settings.progress):
        probs, fallback = _layer_probs(settings, samples, layer - first_stored)
        (result, evaluated), repeats = _estimate(settings, samples, probs)
        diagnostics = {k: v for k, v in result.diagnostics.items() if k != "objective_curve"}
        diagnostics.update(fallback=fallback, repeats=repeats)
        _write(settings, run_id, layer, samples, probs[:, 0], result, evaluated, diagnostics)
    return read_layer_results(settings.db, run_id, settings.estimator, [n_layers])


def _layer_probs(settings: ProfileSettings, samples: RunSamples, index: int) -> tuple[np.ndarray, dict]:
    """The three probes [sample, pass, k] at one stored layer, after the letter-mass fallback where it applies."""
    probs = samples.probs[:, :, index]
    if settings.fallback_upstream:
        return probs, {"applied": "upstream, by the pipeline that wrote the probabilities"}
    if not settings.fallback:
        return probs, {"applied": "no"}
    replaced, counts = with_fallback(probs, samples.mass[:, :, index], LETTER_MASS_FALLBACK)
    return replaced, {"applied": "yes", **counts}


def _estimate(settings: ProfileSettings, samples: RunSamples,
              probs: np.ndarray) -> tuple[tuple[BatchPIDResult, list[int]], dict]:
    """BATCH on the run's fixed fit/evaluation split (when it has one) or a seeded split, with the positions of the
    evaluated samples; with `repeats`, refit with the next seeds and report the spread of the atoms."""
    fits = [_fit_once(settings, samples, probs, settings.seed + repeat) for repeat in range(settings.repeats)]
    if settings.repeats < 2:
        return fits[0], {}
    values = {atom: [result.atoms[atom] for result, _ in fits] for atom in ATOMS}
    spread = {atom: {"sd": float(np.std(found, ddof=1)), "min": min(found), "max": max(found)}
              for atom, found in values.items()}
    return fits[0], {"seeds": [settings.seed + repeat for repeat in range(settings.repeats)],
                     "split": "fixed by the run" if _fixed_split(samples) else "redrawn per seed",
                     "values": values, "spread": spread}


def _fixed_split(samples: RunSamples) -> bool:
    return any(split is not None for split in samples.split)


def _fit_once(settings: ProfileSettings, samples: RunSamples, probs: np.ndarray,
              seed: int) -> tuple[BatchPIDResult, list[int]]:
    full, image_only, text_only = np.moveaxis(probs, 1, 0)
    inputs = (samples.x1, samples.x2, image_only, text_only, full)
    options = {"mode": settings.estimator_mode, "device": settings.device, "seed": seed}
    if settings.bootstrap is not None:
        options["bootstrap"] = settings.bootstrap
    if not _fixed_split(samples):
        result = batch_pid(*inputs, **options)
        return result, [int(i) for i in result.held_out_index]
    fit = np.array([split == FIT for split in samples.split])
    result = batch_pid(*(array[fit] for array in inputs), held_out=tuple(array[~fit] for array in inputs), **options)
    return result, [int(i) for i in np.flatnonzero(~fit)]


def _write(settings: ProfileSettings, run_id: str, layer: int, samples: RunSamples, full: np.ndarray,
           result: BatchPIDResult, evaluated: list[int], diagnostics: dict) -> None:
    has_gold = samples.gold >= 0
    accuracy = float((full.argmax(1)[has_gold] == samples.gold[has_gold]).mean()) if has_gold.any() else None
    write_layer(settings.db, run_id=run_id, layer=layer, estimator=settings.estimator, atoms=result.atoms,
                n_samples=len(evaluated), accuracy=accuracy, diagnostics=diagnostics,
                fitted=result.estimator.to_bytes() if settings.keep_fitted else None,
                pointwise=result.pointwise, sample_ids=[samples.ids[i] for i in evaluated])
