"""BATCH (Liang et al., NeurIPS 2023): PID for continuous features x1, x2 and a discrete answer y.

Two small networks embed x1 and x2 per label; for a batch, the pair kernel is Sinkhorn-projected
onto couplings that keep the probes' (modality, answer) marginals, and the networks are trained
to minimise I_q(X1,X2;Y). Fitted on one split, evaluated on a held-out split, in bits. Training
never reads the evaluation split: early stopping, where used, watches a validation part of the
fitting split.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace

import torch

from pidcore.atoms import ATOMS, Atoms
from pidcore.devices import resolve_device
from pidcore.estimators.alignment import alignment_net
from pidcore.estimators.batch_config import PRESETS, BatchConfig
from pidcore.estimators.batch_terms import conditional_terms
from pidcore.estimators.calibration import Calibration, apply_log_weights, calibration_log_weights, marginal_gap
from pidcore.estimators.fitted import BatchPIDEstimator
from pidcore.estimators.information import kl_nats, to_bits
from pidcore.estimators.sample_set import SampleSet, even_chunks
from pidcore.estimators.validation import check_sample_set

_P_Y_FLOOR = 1e-8


@dataclass
class BatchPIDResult:
    """Dataset atoms (bits, with bootstrap bounds), per-sample atoms and informations of the held-out split
    (ATOMS + INFORMATIONS, their means the dataset values), diagnostics, and the fitted estimator."""

    atoms: Atoms
    pointwise: dict[str, torch.Tensor]
    diagnostics: dict
    estimator: "BatchPIDEstimator"
    held_out_index: torch.Tensor = field(repr=False)


@dataclass
class Training:
    """What training produced: the kept network and how it was chosen."""

    net: torch.nn.Module
    curve: list[dict]
    stopped_because: str
    selection: str
    kept_epoch: int
    initial_bits: float
    kept_bits: float
    floor_bits: float


def batch_pid(x1, x2, p_y_x1, p_y_x2, p_y_x1x2, *, held_out=None, mode: str = "published",
              device: str | torch.device = "auto", config: BatchConfig | None = None,
              progress=None, **overrides) -> BatchPIDResult:
    """Fit BATCH on one split and evaluate on a held-out split.

    `mode` picks a preset of conventions (batch_config.PRESETS: "published" reproduces the paper's stage 3,
    "calibrated" is ours); `config` replaces the preset, and `overrides` set single BatchConfig fields.
    With `held_out=(x1, x2, p_y_x1, p_y_x2, p_y_x1x2)` the given arrays are the fitting split;
    otherwise a seeded `held_out_fraction` of them is held out.
    `progress(epoch, max_epochs, bits)` is called after every epoch when given: the validation objective under
    early stopping, else the epoch's mean training objective.
    """
    config = _configured(mode, config, overrides)
    started = time.perf_counter()
    fit, held, held_index = _splits(x1, x2, p_y_x1, p_y_x2, p_y_x1x2, held_out, config)
    p_y = _p_y(fit if config.p_y_from == "fit" else held)
    fit, fit_cal = _prepared(fit, p_y, config.calibrate_probes)
    held, held_cal = _prepared(held, p_y, config.calibrate_probes)
    dev = resolve_device(device)
    training = _train(fit, p_y, config, dev, progress)
    estimator = BatchPIDEstimator(training.net, config, held_cal, _reference(held, config))
    pointwise, sinkhorn = estimator.score(held, dev)
    atoms = estimator.dataset_atoms(held, pointwise, device=dev)
    diagnostics = _diagnostics(atoms, pointwise, sinkhorn, training, fit_cal, held_cal, fit, held, config, dev)
    diagnostics["seconds"] = time.perf_counter() - started
    return BatchPIDResult(atoms, pointwise, diagnostics, estimator, held_index)


def _configured(mode: str, config: BatchConfig | None, overrides: dict) -> BatchConfig:
    """The preset (or given config) with some fields changed; unknown names and modes are errors."""
    if config is None:
        if mode not in PRESETS:
            raise ValueError(f"mode must be one of {tuple(PRESETS)}, got {mode!r}")
        config = PRESETS[mode]
    unknown = set(overrides) - set(asdict(config))
    if unknown:
        raise ValueError(f"unknown BATCH settings: {sorted(unknown)}")
    config = replace(config, **overrides)
    config.validate()
    return config


# The fewest samples BATCH estimates from: a seeded split keeps at least MIN_HELD_OUT in each part.
MIN_HELD_OUT = 2
MIN_SAMPLES = 2 * MIN_HELD_OUT


def _splits(x1, x2, p1, p2, p12, held_out, config):
    """The fitting and held-out splits (validated) and the held-out rows' indices in the input."""
    data = SampleSet(*check_sample_set(x1, x2, p1, p2, p12, "fit" if held_out is not None else "input"))
    if held_out is not None:
        if len(held_out) != 5:
            raise ValueError("held_out must be (x1, x2, p_y_x1, p_y_x2, p_y_x1x2)")
        held = SampleSet(*check_sample_set(*held_out, "held-out"))
        _check_compatible(data, held)
        return data, held, torch.arange(len(held))
    if len(data) < MIN_SAMPLES:
        raise ValueError(f"need at least {MIN_SAMPLES} samples to split into fitting and held-out sets, got "
                         f"{len(data)}")
    fit_index, held_index = seeded_split(len(data), config.held_out_fraction, config.seed)
    return data.subset(fit_index), data.subset(held_index), held_index


def seeded_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of a seeded split of n items: (the rest, a `fraction` of them, at least 2 in each part)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_part = min(max(MIN_HELD_OUT, round(n * fraction)), n - MIN_HELD_OUT)
    return order[n_part:], order[:n_part].sort().values


def _check_compatible(fit: SampleSet, held: SampleSet) -> None:
    for name in ("x1", "x2", "p1"):
        if getattr(fit, name).shape[1] != getattr(held, name).shape[1]:
            raise ValueError(f"fitting and held-out {name} have different widths: "
                             f"{getattr(fit, name).shape[1]} vs {getattr(held, name).shape[1]}")
    if len(held) < MIN_HELD_OUT:
        raise ValueError(f"the held-out split needs at least {MIN_HELD_OUT} samples")


def _p_y(data: SampleSet) -> torch.Tensor:
    """p(y): the mean of the full pass over a split; exact zeros lifted to 1e-8, as published, so no KL is infinite."""
    p_y = data.p12.mean(0)
    return torch.where(p_y == 0, torch.full_like(p_y, _P_Y_FLOOR), p_y)


def _prepared(data: SampleSet, p_y: torch.Tensor, calibrate: bool) -> tuple[SampleSet, Calibration]:
    """The split's probes, rescaled per class until their means match the split's full pass when `calibrate`;
    with the p(y) the informations use and the split's marginal gaps."""
    own = data.p12.mean(0)
    k = len(own)
    log_w1 = log_w2 = torch.zeros(k, dtype=own.dtype)
    if calibrate:
        log_w1 = calibration_log_weights(data.p1, own)
        log_w2 = calibration_log_weights(data.p2, own)
    calibration = Calibration(p_y, log_w1, log_w2, marginal_gap(data.p1, own), marginal_gap(data.p2, own))
    p1, p2 = apply_log_weights(data.p1, log_w1), apply_log_weights(data.p2, log_w2)
    return SampleSet(data.x1, data.x2, p1, p2, data.p12), calibration


def _train(fit: SampleSet, p_y: torch.Tensor, config: BatchConfig, device, progress) -> Training:
    """Adam on the fitting split: max_epochs exactly, or early stopping on a validation part of the fitting split.

    Only early stopping reads the monitored objective every epoch; with fixed epochs it is measured at the start and
    for the kept network only (the untrained flag compares the two), and the curve's other epochs carry the training
    loop's own mean objective (`fit_bits`) with `monitored_bits` None: the per-epoch pass cost a quarter of a fit.
    """
    training_part, validation = fit, None
    if config.early_stopping and len(fit) >= 8:
        train_index, validation_index = seeded_split(len(fit), config.validation_fraction, config.seed + 5)
        training_part, validation = fit.subset(train_index), fit.subset(validation_index)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        net = alignment_net(fit.x1.shape[1], fit.x2.shape[1], fit.p1.shape[1], config)
    if config.standardise_features:
        net.set_feature_stats(training_part.x1.float(), training_part.x2.float())
    net.to(device)
    generator = torch.Generator().manual_seed(config.seed + 1)
    watched = validation if validation is not None else training_part
    monitor = watched.subset(torch.randperm(len(watched), generator=generator)[: config.monitor_samples])
    optimizer = Adam(list(net.parameters()), config.learning_rate)
    initial = _objective_bits(net, monitor, config, device)
    floor = _floor_bits(monitor, p_y)
    curve = [{"epoch": 0, "fit_bits": None, "monitored_bits": initial}]
    best, best_state, kept, stale = initial, copy.deepcopy(net.state_dict()), 0, 0
    stop = "max_epochs reached"
    training32 = training_part.to(device, torch.float32)
    for epoch in range(1, config.max_epochs + 1):
        fit_bits = _epoch(net, optimizer, training32, config, generator)
        monitored = _objective_bits(net, monitor, config, device) if validation is not None else None
        curve.append({"epoch": epoch, "fit_bits": fit_bits, "monitored_bits": monitored})
        if progress is not None:
            progress(epoch, config.max_epochs, fit_bits if monitored is None else monitored)
        if not (math.isfinite(fit_bits) and (monitored is None or math.isfinite(monitored))):
            warnings.warn(f"BATCH objective became non-finite at epoch {epoch}; keeping epoch {kept}")
            stop = "non-finite objective"
            break
        if validation is None or monitored < best - config.min_improvement_bits:
            best, best_state, kept, stale = monitored, copy.deepcopy(net.state_dict()), epoch, 0
        else:
            stale += 1
            if stale >= config.patience:
                stop = "early stopping"
                break
    net.load_state_dict(best_state)
    if validation is None:
        best = initial if kept == 0 else _objective_bits(net, monitor, config, device)
        curve[kept]["monitored_bits"] = best
    selection = ("early stopping on a validation part of the fitting split" if validation is not None
                 else "fixed epochs (fitting split under 8 samples)" if config.early_stopping else "fixed epochs")
    return Training(net, curve, stop, selection, kept, initial, best, floor)


class Adam:
    """Adam (Kingma and Ba) exactly as torch.optim.Adam's single-tensor update with its defaults; hand-written
    because creating a torch.optim optimiser imports torch._dynamo, 1.7 s of a 2 x 2,048 fit's process."""

    def __init__(self, params: list[torch.nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        """Zero moment estimates and step counts per parameter, as torch.optim.Adam's state starts."""
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.steps = [0] * len(params)
        self.exp_avg = [torch.zeros_like(param, memory_format=torch.preserve_format) for param in params]
        self.exp_avg_sq = [torch.zeros_like(param, memory_format=torch.preserve_format) for param in params]

    def zero_grad(self) -> None:
        """Drop the parameters' gradients, as torch's zero_grad(set_to_none=True)."""
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter with a gradient, torch's operations in torch's order."""
        beta1, beta2 = self.betas
        for index, (param, exp_avg, exp_avg_sq) in enumerate(zip(self.params, self.exp_avg, self.exp_avg_sq)):
            if param.grad is None:
                continue
            self.steps[index] += 1
            step_size = self.lr / (1 - beta1 ** self.steps[index])
            correction2_sqrt = (1 - beta2 ** self.steps[index]) ** 0.5
            exp_avg.lerp_(param.grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(param.grad, param.grad, value=1 - beta2)
            param.addcdiv_(exp_avg, (exp_avg_sq.sqrt() / correction2_sqrt).add_(self.eps), value=-step_size)


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
    """Mean I_q(X2;Y|X1) in bits over `data`, batched like the final evaluation."""
    net.eval()
    data = data.to(device, torch.float32)
    total = 0.0
    for chunk in even_chunks(torch.arange(len(data), device=device), config.batch_size):
        batch = data.subset(chunk)
        terms, _ = conditional_terms(net(batch.x1, batch.x2), batch.p1, batch.p2,
                                     config.sinkhorn_tol, config.sinkhorn_max_iter)
        total += float(terms.sum())
    return float(to_bits(torch.tensor(total / len(data))))


def _floor_bits(data: SampleSet, p_y: torch.Tensor) -> float:
    """A lower bound on the conditional term I_q(X2;Y|X1) = Iq - I(X1;Y) over data: I(X2;Y) - I(X1;Y), since
    Iq >= I(X2;Y). An objective at its floor has nothing left to learn."""
    i1, i2 = (float(to_bits(kl_nats(p, p_y[None]).mean())) for p in (data.p1, data.p2))
    return max(0.0, i2 - i1)


def _reference(held: SampleSet, config: BatchConfig) -> SampleSet:
    """The held-out samples a new sample is scored among: a seeded batch_size - 1 of them."""
    order = torch.randperm(len(held), generator=torch.Generator().manual_seed(config.seed + 2))
    return held.subset(order[: config.batch_size - 1].sort().values)


def _diagnostics(atoms, pointwise, sinkhorn, training: Training, fit_cal, held_cal, fit, held, config,
                 device) -> dict:
    """What a careful reader needs to trust (or distrust) the atoms."""
    return {
        "mode": config.mode,
        "config": asdict(config),
        "device": str(device),
        "n_fit": len(fit),
        "n_held_out": len(held),
        "p_y_from": config.p_y_from,
        "marginal_gap_x1": held_cal.gap1,
        "marginal_gap_x2": held_cal.gap2,
        "marginal_gap_x1_fit": fit_cal.gap1,
        "marginal_gap_x2_fit": fit_cal.gap2,
        "marginal_gap_after_calibration": max(marginal_gap(held.p1, held.p12.mean(0)),
                                              marginal_gap(held.p2, held.p12.mean(0))),
        "sinkhorn_residual": sinkhorn["residual"],
        "sinkhorn_iterations": sinkhorn["iterations"],
        "sinkhorn_converged": sinkhorn["converged"],
        "selection": training.selection,
        "epochs": training.curve[-1]["epoch"],
        "best_epoch": training.kept_epoch,
        "initial_bits": training.initial_bits,
        "kept_bits": training.kept_bits,
        "floor_bits": training.floor_bits,
        "stopped_because": training.stopped_because,
        "objective_curve": training.curve,
        "bounds": dict(atoms.bounds),
        "negative_atoms": {name: value for name, value in atoms.as_dict().items() if value < 0},
        "negative_pointwise_fraction": {name: float((pointwise[name] < 0).double().mean()) for name in ATOMS},
    }
