"""BATCH (Liang et al., NeurIPS 2023): PID for continuous features x1, x2 and a discrete answer y.

Two small networks embed x1 and x2 per label; for a batch, the pair kernel is Sinkhorn-projected
onto couplings that keep the probes' (modality, answer) marginals, and the networks are trained
to minimise I_q(X1,X2;Y). Fitted on one split, evaluated on a held-out split, in bits.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import asdict, dataclass, field

import torch

from pidcore.atoms import ATOMS, Atoms
from pidcore.devices import resolve_device
from pidcore.estimators.alignment import AlignmentNet
from pidcore.estimators.batch_config import BatchConfig
from pidcore.estimators.batch_terms import conditional_terms
from pidcore.estimators.calibration import Calibration, apply_log_weights, calibration_log_weights, marginal_gap
from pidcore.estimators.fitted import BatchPIDEstimator
from pidcore.estimators.information import to_bits
from pidcore.estimators.sample_set import SampleSet, even_chunks
from pidcore.estimators.validation import check_sample_set


@dataclass
class BatchPIDResult:
    """Dataset atoms (bits), per-sample atoms and informations of the held-out split (ATOMS + INFORMATIONS, their
    means the dataset values), diagnostics, and the fitted estimator."""

    atoms: Atoms
    pointwise: dict[str, torch.Tensor]
    diagnostics: dict
    estimator: "BatchPIDEstimator"
    held_out_index: torch.Tensor = field(repr=False)


def batch_pid(x1, x2, p_y_x1, p_y_x2, p_y_x1x2, *, held_out=None, mode: str = "published",
              device: str | torch.device = "auto", config: BatchConfig | None = None,
              progress=None, **overrides) -> BatchPIDResult:
    """Fit BATCH on one split and evaluate on a held-out split.

    With `held_out=(x1, x2, p_y_x1, p_y_x2, p_y_x1x2)` the given arrays are the fitting split;
    otherwise a seeded `held_out_fraction` of them is held out. `overrides` set BatchConfig fields.
    `progress(epoch, max_epochs, held_out_bits)` is called after every epoch when given.
    """
    config = _replace(config or BatchConfig(), mode=mode, **overrides)
    config.validate()
    started = time.perf_counter()
    fit, held, held_index = _splits(x1, x2, p_y_x1, p_y_x2, p_y_x1x2, held_out, config)
    fit, fit_cal = _prepared(fit, config.mode)
    held, held_cal = _prepared(held, config.mode)
    dev = resolve_device(device)
    net, curve, stop = _train(fit, held, config, dev, progress)
    estimator = BatchPIDEstimator(net, config, held_cal, _reference(held, config))
    pointwise, sinkhorn = estimator.score(held, dev)
    atoms = Atoms.from_mapping({name: values.mean() for name, values in pointwise.items()})
    diagnostics = _diagnostics(atoms, pointwise, sinkhorn, curve, fit_cal, held_cal, fit, held, dev)
    diagnostics["mode"] = config.mode
    diagnostics["stopped_because"] = stop
    diagnostics["seconds"] = time.perf_counter() - started
    return BatchPIDResult(atoms, pointwise, diagnostics, estimator, held_index)


def _replace(config: BatchConfig, **changes) -> BatchConfig:
    """A copy of config with some fields changed; unknown names are an error."""
    unknown = set(changes) - set(asdict(config))
    if unknown:
        raise ValueError(f"unknown BATCH settings: {sorted(unknown)}")
    return BatchConfig(**{**asdict(config), **changes})


def _splits(x1, x2, p1, p2, p12, held_out, config):
    """The fitting and held-out splits (validated) and the held-out rows' indices in the input."""
    data = SampleSet(*check_sample_set(x1, x2, p1, p2, p12, "fit" if held_out is not None else "input"))
    if held_out is not None:
        if len(held_out) != 5:
            raise ValueError("held_out must be (x1, x2, p_y_x1, p_y_x2, p_y_x1x2)")
        held = SampleSet(*check_sample_set(*held_out, "held-out"))
        _check_compatible(data, held)
        return data, held, torch.arange(len(held))
    if len(data) < 4:
        raise ValueError(f"need at least 4 samples to split into fitting and held-out sets, got {len(data)}")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(config.seed))
    n_held = min(max(2, round(len(data) * config.held_out_fraction)), len(data) - 2)
    held_index, fit_index = order[:n_held].sort().values, order[n_held:]
    return data.subset(fit_index), data.subset(held_index), held_index


def _check_compatible(fit: SampleSet, held: SampleSet) -> None:
    for name in ("x1", "x2", "p1"):
        if getattr(fit, name).shape[1] != getattr(held, name).shape[1]:
            raise ValueError(f"fitting and held-out {name} have different widths: "
                             f"{getattr(fit, name).shape[1]} vs {getattr(held, name).shape[1]}")
    if len(held) < 2:
        raise ValueError("the held-out split needs at least 2 samples")


def _prepared(data: SampleSet, mode: str) -> tuple[SampleSet, Calibration]:
    """Set p_y to the mean of p(y|x1,x2); in calibrated mode rescale both unimodal probes to match it."""
    p_y = data.p12.mean(0)
    k = len(p_y)
    log_w1 = log_w2 = torch.zeros(k, dtype=p_y.dtype)
    if mode == "calibrated":
        log_w1 = calibration_log_weights(data.p1, p_y)
        log_w2 = calibration_log_weights(data.p2, p_y)
    calibration = Calibration(p_y, log_w1, log_w2, marginal_gap(data.p1, p_y), marginal_gap(data.p2, p_y))
    p1, p2 = apply_log_weights(data.p1, log_w1), apply_log_weights(data.p2, log_w2)
    return SampleSet(data.x1, data.x2, p1, p2, data.p12), calibration


def _train(fit: SampleSet, held: SampleSet, config: BatchConfig, device, progress):
    """Adam on the fitting split; keep the weights with the best held-out objective (early stopping)."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        net = AlignmentNet(fit.x1.shape[1], fit.x2.shape[1], fit.p1.shape[1],
                           config.hidden_dim, config.embed_dim, config.layers, config.logit_cap)
    net.set_feature_stats(fit.x1.float(), fit.x2.float())
    net.to(device)
    fit32 = fit.to(device, torch.float32)
    generator = torch.Generator().manual_seed(config.seed + 1)
    monitor = held.subset(torch.randperm(len(held), generator=generator)[: config.monitor_samples])
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    best = _objective_bits(net, monitor, config, device)
    curve = [{"epoch": 0, "fit_bits": None, "held_out_bits": best, "kept": True}]
    best_state, stale, stop = copy.deepcopy(net.state_dict()), 0, "max_epochs reached"
    for epoch in range(1, config.max_epochs + 1):
        fit_bits = _epoch(net, optimizer, fit32, config, generator)
        held_bits = _objective_bits(net, monitor, config, device)
        improved = held_bits < best - config.min_improvement_bits
        curve.append({"epoch": epoch, "fit_bits": fit_bits, "held_out_bits": held_bits, "kept": improved})
        if progress is not None:
            progress(epoch, config.max_epochs, held_bits)
        if not (math.isfinite(fit_bits) and math.isfinite(held_bits)):
            warnings.warn(f"BATCH objective became non-finite at epoch {epoch}; keeping epoch "
                          f"{[row['epoch'] for row in curve if row['kept']][-1]}")
            stop = "non-finite objective"
            break
        if improved:
            best, best_state, stale = held_bits, copy.deepcopy(net.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                stop = "early stopping"
                break
    net.load_state_dict(best_state)
    return net, curve, stop


def _epoch(net, optimizer, fit: SampleSet, config: BatchConfig, generator) -> float:
    """One pass over shuffled fitting batches; returns the mean training objective in bits."""
    net.train()
    total = 0.0
    for chunk in even_chunks(torch.randperm(len(fit), generator=generator).to(fit.x1.device), config.batch_size):
        batch = fit.subset(chunk)
        terms, _ = conditional_terms(net(batch.x1, batch.x2), batch.p1, batch.p2,
                                     config.sinkhorn_tol, config.sinkhorn_max_iter)
        loss = terms.mean()
        if not torch.isfinite(loss):
            return float("nan")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(chunk)
    return float(to_bits(torch.tensor(total / len(fit))))


@torch.no_grad()
def _objective_bits(net, data: SampleSet, config: BatchConfig, device) -> float:
    """Mean held-out I_q(X2;Y|X1) in bits, batched like the final evaluation."""
    net.eval()
    data = data.to(device, torch.float32)
    total = 0.0
    for chunk in even_chunks(torch.arange(len(data), device=device), config.batch_size):
        batch = data.subset(chunk)
        terms, _ = conditional_terms(net(batch.x1, batch.x2), batch.p1, batch.p2,
                                     config.sinkhorn_tol, config.sinkhorn_max_iter)
        total += float(terms.sum())
    return float(to_bits(torch.tensor(total / len(data))))


def _reference(held: SampleSet, config: BatchConfig) -> SampleSet:
    """The held-out samples a new sample is scored among: a seeded batch_size - 1 of them."""
    order = torch.randperm(len(held), generator=torch.Generator().manual_seed(config.seed + 2))
    return held.subset(order[: config.batch_size - 1].sort().values)


def _diagnostics(atoms, pointwise, sinkhorn, curve, fit_cal, held_cal, fit, held, device) -> dict:
    """What a careful reader needs to trust (or distrust) the atoms."""
    kept = [row["epoch"] for row in curve if row["kept"]][-1]
    return {
        "device": str(device),
        "n_fit": len(fit),
        "n_held_out": len(held),
        "marginal_gap_x1": held_cal.gap1,
        "marginal_gap_x2": held_cal.gap2,
        "marginal_gap_x1_fit": fit_cal.gap1,
        "marginal_gap_x2_fit": fit_cal.gap2,
        "marginal_gap_after_calibration": max(marginal_gap(held.p1, held_cal.p_y),
                                              marginal_gap(held.p2, held_cal.p_y)),
        "sinkhorn_residual": sinkhorn["residual"],
        "sinkhorn_iterations": sinkhorn["iterations"],
        "sinkhorn_converged": sinkhorn["converged"],
        "epochs": curve[-1]["epoch"],
        "best_epoch": kept,
        "objective_curve": curve,
        "negative_atoms": {name: value for name, value in atoms.as_dict().items() if value < 0},
        "negative_pointwise_fraction": {name: float((pointwise[name] < 0).double().mean()) for name in ATOMS},
    }

