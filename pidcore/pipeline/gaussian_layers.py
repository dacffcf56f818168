"""The Gaussian PID of a run at every layer (the second study's measurement, beside BATCH's rows of the same run).

X1 is the image tokens' mean hidden state and X2 the question tokens' (pidcore.probes.hidden), Y the model's output
letter logits as isometric log-ratios over the k options (k - 1 coordinates: the log-ratios' sum is fixed, so a
k-th would make the covariance singular). Per layer each source is reduced by PCA and optionally Gaussianised on the
fitting split (pidcore.estimators.reduction), and the atoms come from the covariance of the evaluation split, with
bootstrap intervals over its samples; every layer is estimated in one batch. The Gaussian PID has no per-sample
atoms, so no pointwise rows are stored.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from pidcore.atoms import ATOMS, FIT, Atoms
from pidcore.devices import resolve_device
from pidcore.estimators.batch import seeded_split
from pidcore.estimators.batch_config import BatchConfig
from pidcore.estimators.gaussian import gaussian_pid_from_covariance, sample_covariance
from pidcore.estimators.intervals import percentile_interval
from pidcore.estimators.reduction import BIAS_BUDGET_BITS, constant_layers, prepare
from pidcore.pipeline.layers import RunSamples, load_run_samples, selected_layers
from pidcore.pipeline.settings import ProfileSettings
from pidcore.store import LayerResult, load_hidden_states, read_layer_results, run_depth, stored_layers, write_layer

logger = logging.getLogger(__name__)

CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 100
PROBABILITY_FLOOR = 1e-30  # a letter probability that underflowed to 0 is read as this before its log
CONSTANT_REASON = ("the image or the question tokens' hidden states are the same in every fitting sample there (a "
                   "constant input has no information to split)")
SINGULAR_REASON = ("the reduced features and the target are linearly dependent on the evaluation samples there (they "
                   "take too few distinct values), so the Gaussian mutual informations are infinite")
PER_LAYER = ("rank", "variance_kept")  # the reduction record's entries that hold one value per layer and source
_RESAMPLE_CHUNK = 16  # bootstrap resamples whose covariances (one per layer each) are formed together


def estimate_gaussian_layers(settings: ProfileSettings, run_id: str) -> list[LayerResult]:
    """Estimate the Gaussian PID at every selected layer not yet stored for it; return the output layer's result."""
    estimator = settings.gaussian_estimator
    n_layers = run_depth(settings.db, run_id)
    samples = load_run_samples(settings.db, run_id)
    features = _features(settings.db, run_id, samples)
    first_stored = n_layers + 1 - features.shape[2]
    done = stored_layers(settings.db, run_id, estimator)
    layers = [layer for layer in selected_layers(settings.layers, n_layers) if layer >= first_stored
              and layer not in done]
    fit = _fitting_mask(samples, settings.seed)
    constant = sorted(_constant_layers(features, fit, first_stored) & set(layers))
    _write_not_estimated(settings, run_id, samples, constant, first_stored, CONSTANT_REASON)
    layers = [layer for layer in layers if layer not in constant]
    if layers:
        _estimate_and_write(settings, run_id, samples, features, fit, first_stored, layers)
    return read_layer_results(settings.db, run_id, estimator, [n_layers])


def output_target(probs: np.ndarray) -> np.ndarray:
    """The full pass's output letter distributions [n, k] as isometric log-ratios [n, k - 1] (Helmert basis)."""
    k = probs.shape[1]
    basis = np.zeros((k, k - 1))
    for column in range(k - 1):
        basis[: column + 1, column] = 1 / (column + 1)
        basis[column + 1, column] = -1
        basis[:, column] *= np.sqrt((column + 1) / (column + 2))
    return np.log(np.maximum(probs, PROBABILITY_FLOOR)) @ basis


def _features(db: str, run_id: str, samples: RunSamples) -> np.ndarray:
    """The run's samples' stored hidden-state features [sample, source, stored layer, feature], all or an error."""
    stored = load_hidden_states(db, run_id)
    missing = [sample_id for sample_id in samples.ids if sample_id not in stored]
    if missing:
        raise ValueError(f"run {run_id} has no hidden-state features for {len(missing)} of its {len(samples.ids)} "
                         f"samples (e.g. {missing[0]}); profile it again with --hidden-states")
    return np.stack([stored[sample_id] for sample_id in samples.ids]).astype(np.float64)


def _fitting_mask(samples: RunSamples, seed: int) -> np.ndarray:
    """The run's own fitting split where it fixes one, else BATCH's seeded split of the same seed."""
    if any(split is not None for split in samples.split):
        return np.array([split == FIT for split in samples.split])
    fit, _ = seeded_split(len(samples.ids), BatchConfig().held_out_fraction, seed)
    mask = np.zeros(len(samples.ids), bool)
    mask[fit.numpy()] = True
    return mask


def _constant_layers(features: np.ndarray, fit: np.ndarray, first_stored: int) -> set[int]:
    """The layers where either source is constant on the fitting samples."""
    found = set()
    for source in range(features.shape[1]):
        rows = torch.from_numpy(features[fit, source].transpose(1, 0, 2))
        found.update(first_stored + index for index in constant_layers(rows))
    return found


def _estimate_and_write(settings: ProfileSettings, run_id: str, samples: RunSamples, features: np.ndarray,
                        fit: np.ndarray, first_stored: int, layers: list[int]) -> None:
    """Reduce, estimate and bootstrap the given layers in one batch, and write a row for each."""
    device = resolve_device(settings.device)
    indices = [layer - first_stored for layer in layers]
    target = output_target(samples.probs[:, 0, -1])
    x1, x2 = (torch.from_numpy(features[:, source, indices].transpose(1, 0, 2)).to(device) for source in (0, 1))
    joint, d1, d2, record = prepare(x1, x2, torch.from_numpy(target).to(device), torch.from_numpy(fit).to(device),
                                    components=settings.components, gaussianise=settings.gaussianise)
    if record["bias_bound_bits"] > BIAS_BUDGET_BITS:
        logger.warning("%s: with %d evaluation samples even one component per source leaves a plug-in bias of up "
                       "to %.3f bits in I(X1,X2;Y) (the budget is %g); more samples narrow it",
                       settings.gaussian_estimator, record["n_eval"], record["bias_bound_bits"], BIAS_BUDGET_BITS)
    covariances = sample_covariance(joint)
    singular = (torch.linalg.cholesky_ex(covariances).info != 0).cpu().tolist()
    _write_not_estimated(settings, run_id, samples, [layer for layer, bad in zip(layers, singular) if bad],
                         first_stored, SINGULAR_REASON)
    kept = [position for position, bad in enumerate(singular) if not bad]
    if not kept:
        return
    joint, layers, indices = joint[kept], [layers[i] for i in kept], [indices[i] for i in kept]
    record = {**record, **{key: {source: [values[i] for i in kept] for source, values in record[key].items()}
                           for key in PER_LAYER}}
    result = gaussian_pid_from_covariance(covariances[kept], d1, d2)
    resamples = DEFAULT_RESAMPLES if settings.bootstrap is None else settings.bootstrap
    bounds = _bootstrap_bounds(joint, d1, d2, resamples, settings.seed) if resamples > 0 else None
    for position, layer in enumerate(layers):
        atoms = Atoms(*(float(result.stacked()[position, index]) for index in range(len(ATOMS))),
                      bounds=None if bounds is None else {name: bounds[name][position] for name in ATOMS})
        diagnostics = {"family": "gaussian", "target": f"output letter logits, {target.shape[1]} isometric "
                       "log-ratios", "n_fit": int(fit.sum()), "resamples": resamples,
                       **{name: float(getattr(result, name)[position]) for name in ("i1", "i2", "i12", "iq")},
                       "reduction": _layer_record(record, position)}
        write_layer(settings.db, run_id=run_id, layer=layer, estimator=settings.gaussian_estimator, atoms=atoms,
                    n_samples=int((~fit).sum()), accuracy=_accuracy(samples, indices[position]),
                    diagnostics=diagnostics, fitted=None, pointwise={}, sample_ids=[])


def _write_not_estimated(settings: ProfileSettings, run_id: str, samples: RunSamples, layers: list[int],
                         first_stored: int, reason: str) -> None:
    """Say why these layers have no Gaussian atoms, and store them as such (NaN atoms, the reason in the
    diagnostics), so the row is kept aloud and a resumed run or sweep does not try them again."""
    if not layers:
        return
    estimator = settings.gaussian_estimator
    logger.warning("%s: layer(s) %s not estimated: %s", estimator, ", ".join(map(str, layers)), reason)
    for layer in layers:
        write_layer(settings.db, run_id=run_id, layer=layer, estimator=estimator,
                    atoms=Atoms(*[float("nan")] * len(ATOMS)), n_samples=0,
                    accuracy=_accuracy(samples, layer - first_stored),
                    diagnostics={"family": "gaussian", "not_estimated": reason}, fitted=None, pointwise={},
                    sample_ids=[])


def _layer_record(record: dict, position: int) -> dict:
    """What the reduction did, with its per-layer lists (rank, variance kept per source) at one layer."""
    return {key: ({source: values[position] for source, values in value.items()} if key in PER_LAYER else value)
            for key, value in record.items()}


def _accuracy(samples: RunSamples, index: int) -> float | None:
    """The full pass's accuracy at one stored layer (as BATCH's rows give it), None without gold answers."""
    has_gold = samples.gold >= 0
    if not has_gold.any():
        return None
    return float((samples.probs[has_gold, 0, index].argmax(1) == samples.gold[has_gold]).mean())


def _bootstrap_bounds(joint: torch.Tensor, d1: int, d2: int, resamples: int,
                      seed: int) -> dict[str, list[tuple[float, float]]]:
    """95% percentile bounds per atom and layer over seeded resamples of the evaluation samples, the same resample
    for every layer (a sample is drawn whole, at all its layers); NaN bounds (no interval) at a layer where a
    resample's covariance is singular."""
    generator = torch.Generator().manual_seed(seed)
    n = joint.shape[1]
    chunks = []
    for start in range(0, resamples, _RESAMPLE_CHUNK):
        picks = torch.randint(n, (min(_RESAMPLE_CHUNK, resamples - start), n), generator=generator)
        drawn = joint[:, picks.to(joint.device)].transpose(0, 1)  # [resample, layer, n, D]
        chunks.append(_resampled_atoms(sample_covariance(drawn), d1, d2))
    stacked = torch.cat(chunks)  # [resample, layer, atom]
    return {name: [percentile_interval(stacked[:, layer, index], CONFIDENCE) for layer in range(stacked.shape[1])]
            for index, name in enumerate(ATOMS)}


def _resampled_atoms(covariances: torch.Tensor, d1: int, d2: int) -> torch.Tensor:
    """Atoms [resample, layer, 4] of resampled covariances, NaN where one is singular (too few distinct rows)."""
    atoms = torch.full((*covariances.shape[:2], len(ATOMS)), float("nan"), dtype=torch.float64)
    regular = torch.linalg.cholesky_ex(covariances).info == 0
    if regular.any():
        atoms[regular.cpu()] = gaussian_pid_from_covariance(covariances[regular], d1, d2).stacked().cpu()
    return atoms
