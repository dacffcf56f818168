"""Atoms for every layer of a run: BATCH fitted on the run's stored probe outputs, one layer per short write."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from pidcore.estimators import BatchPIDResult, batch_pid
from pidcore.pipeline.settings import ProfileSettings
from pidcore.store import LayerResult, load_samples, read_layer_results, run_depth, stored_layers, write_layer

logger = logging.getLogger(__name__)


@dataclass
class RunSamples:
    """A run's samples with the most common option count, stacked: probs is [sample, pass, stored layer, k]."""

    ids: list[str]
    gold: np.ndarray
    x1: np.ndarray
    x2: np.ndarray
    probs: np.ndarray


def load_run_samples(db: str, run_id: str) -> RunSamples:
    """The run's stored samples; those with another option count than the most common one are left out, aloud."""
    rows = load_samples(db, run_id)
    if not rows:
        raise ValueError(f"run {run_id} has no stored samples to estimate atoms from")
    k = Counter(row.n_options for row in rows).most_common(1)[0][0]
    kept = [row for row in rows if row.n_options == k]
    if len(kept) < len(rows):
        logger.warning("estimating on the %d samples with %d options; %d others left out", len(kept), k,
                       len(rows) - len(kept))
    return RunSamples([row.sample_id for row in kept], np.array([-1 if row.gold is None else row.gold for row in kept]),
                      np.stack([row.x1 for row in kept]), np.stack([row.x2 for row in kept]),
                      np.stack([row.probs for row in kept]).astype(np.float64))


def selected_layers(spec: str, n_layers: int) -> list[int]:
    """"all", "last", or a comma list of layer numbers (0 = embeddings, n_layers = the real output)."""
    if spec == "all":
        return list(range(n_layers + 1))
    if spec == "last":
        return [n_layers]
    layers = sorted({int(part) for part in spec.split(",")})
    bad = [layer for layer in layers if not 0 <= layer <= n_layers]
    if bad:
        raise ValueError(f"layers {bad} are outside 0..{n_layers}")
    return layers


def estimate_layers(settings: ProfileSettings, run_id: str) -> list[LayerResult]:
    """Fit BATCH per layer not yet stored; store dataset atoms, pointwise atoms and the fitted estimator; return the
    output layer's result.

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
        full, image_only, text_only = (samples.probs[:, index, layer - first_stored] for index in range(3))
        result = batch_pid(samples.x1, samples.x2, image_only, text_only, full, mode=settings.estimator_mode,
                           device=settings.device, seed=settings.seed)
        _write(settings, run_id, layer, samples, full, result)
    return read_layer_results(settings.db, run_id, settings.estimator, [n_layers])


def _write(settings: ProfileSettings, run_id: str, layer: int, samples: RunSamples, full: np.ndarray,
           result: BatchPIDResult) -> None:
    has_gold = samples.gold >= 0
    accuracy = float((full.argmax(1)[has_gold] == samples.gold[has_gold]).mean()) if has_gold.any() else None
    held = result.held_out_index.tolist()
    write_layer(settings.db, run_id=run_id, layer=layer, estimator=settings.estimator, atoms=result.atoms,
                n_samples=len(held), accuracy=accuracy,
                diagnostics={k: v for k, v in result.diagnostics.items() if k != "objective_curve"},
                fitted=result.estimator.to_bytes() if settings.keep_fitted else None,
                pointwise=result.pointwise, sample_ids=[samples.ids[i] for i in held])
