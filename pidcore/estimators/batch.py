"""BATCH (Liang et al., NeurIPS 2023): PID for continuous features x1, x2 and a discrete answer y.

Two small networks embed x1 and x2 per label; for a batch, the pair kernel is Sinkhorn-projected
onto couplings that keep the probes' (modality, answer) marginals, and the networks are trained
to minimise I_q(X1,X2;Y). Fitted on one split, evaluated on a held-out split, in bits.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field

import safetensors.torch
import torch

from pidcore.devices import resolve_device
from pidcore.estimators.alignment import AlignmentNet
from pidcore.estimators.batch_terms import conditional_terms
from pidcore.estimators.calibration import apply_log_weights, calibration_log_weights, marginal_gap
from pidcore.estimators.information import kl_nats, to_bits
from pidcore.estimators.validation import check_sample_set

MODES = ("published", "calibrated")
ATOMS = ("r", "u1", "u2", "s")
TERMS = ("i1", "i2", "i12", "iq")


@dataclass
class BatchConfig:
    """Everything that shapes a BATCH fit; stored with a fitted estimator."""

    mode: str = "published"
    hidden_dim: int = 32
    embed_dim: int = 10
    layers: int = 3
    logit_cap: float = 5.0
    learning_rate: float = 1e-2
    batch_size: int = 256
    max_epochs: int = 40
    patience: int = 3
    min_improvement_bits: float = 1e-3
    monitor_samples: int = 4096
    sinkhorn_tol: float = 1e-5
    sinkhorn_max_iter: int = 100
    held_out_fraction: float = 0.5
    seed: int = 0

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2, got {self.batch_size}")
        if not 0 < self.held_out_fraction < 1:
            raise ValueError(f"held_out_fraction must be in (0, 1), got {self.held_out_fraction}")


@dataclass
class Probes:
    """One split's features and probe distributions (p_y_x1 etc. already calibrated if the mode asks)."""

    x1: torch.Tensor
    x2: torch.Tensor
    p1: torch.Tensor
    p2: torch.Tensor
    p12: torch.Tensor

    def subset(self, index: torch.Tensor) -> "Probes":
        return Probes(*(getattr(self, name)[index] for name in ("x1", "x2", "p1", "p2", "p12")))

    def to(self, device: torch.device, dtype: torch.dtype) -> "Probes":
        return Probes(*(getattr(self, name).to(device, dtype) for name in ("x1", "x2", "p1", "p2", "p12")))

    def __len__(self) -> int:
        return len(self.x1)


@dataclass
class BatchPIDResult:
    """Dataset atoms (bits), per-sample atoms of the held-out split, diagnostics, and the fitted estimator."""

    atoms: dict[str, float]
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
    net, curve = _train(fit, held, config, dev, progress)
    estimator = BatchPIDEstimator(net, config, held_cal, _reference(held, config))
    pointwise, sinkhorn = estimator.score(held, dev)
    atoms = {name: float(values.mean()) for name, values in pointwise.items()}
    diagnostics = _diagnostics(atoms, pointwise, sinkhorn, curve, fit_cal, held_cal, fit, held, dev)
    diagnostics["mode"] = config.mode
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
    data = Probes(*check_sample_set(x1, x2, p1, p2, p12, "fit" if held_out is not None else "input"))
    if held_out is not None:
        if len(held_out) != 5:
            raise ValueError("held_out must be (x1, x2, p_y_x1, p_y_x2, p_y_x1x2)")
        held = Probes(*check_sample_set(*held_out, "held-out"))
        _check_compatible(data, held)
        return data, held, torch.arange(len(held))
    if len(data) < 4:
        raise ValueError(f"need at least 4 samples to split into fitting and held-out sets, got {len(data)}")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(config.seed))
    n_held = min(max(2, round(len(data) * config.held_out_fraction)), len(data) - 2)
    held_index, fit_index = order[:n_held].sort().values, order[n_held:]
    return data.subset(fit_index), data.subset(held_index), held_index


def _check_compatible(fit: Probes, held: Probes) -> None:
    for name in ("x1", "x2", "p1"):
        if getattr(fit, name).shape[1] != getattr(held, name).shape[1]:
            raise ValueError(f"fitting and held-out {name} have different widths: "
                             f"{getattr(fit, name).shape[1]} vs {getattr(held, name).shape[1]}")
    if len(held) < 2:
        raise ValueError("the held-out split needs at least 2 samples")


@dataclass
class Calibration:
    """p_y of a split, the raw marginal gaps, and the per-class log weights applied (zeros when published)."""

    p_y: torch.Tensor
    log_w1: torch.Tensor
    log_w2: torch.Tensor
    gap1: float
    gap2: float


def _prepared(data: Probes, mode: str) -> tuple[Probes, Calibration]:
    """Set p_y to the mean of p(y|x1,x2); in calibrated mode rescale both unimodal probes to match it."""
    p_y = data.p12.mean(0)
    k = len(p_y)
    log_w1 = log_w2 = torch.zeros(k, dtype=p_y.dtype)
    if mode == "calibrated":
        log_w1 = calibration_log_weights(data.p1, p_y)
        log_w2 = calibration_log_weights(data.p2, p_y)
    calibration = Calibration(p_y, log_w1, log_w2, marginal_gap(data.p1, p_y), marginal_gap(data.p2, p_y))
    p1, p2 = apply_log_weights(data.p1, log_w1), apply_log_weights(data.p2, log_w2)
    return Probes(data.x1, data.x2, p1, p2, data.p12), calibration


def even_chunks(index: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split indices into near-equal batches of about batch_size; nothing is dropped."""
    n_chunks = max(1, round(len(index) / batch_size))
    return list(torch.tensor_split(index, n_chunks))


def _train(fit: Probes, held: Probes, config: BatchConfig, device, progress):
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
    best_state, stale = copy.deepcopy(net.state_dict()), 0
    for epoch in range(1, config.max_epochs + 1):
        fit_bits = _epoch(net, optimizer, fit32, config, generator)
        held_bits = _objective_bits(net, monitor, config, device)
        improved = held_bits < best - config.min_improvement_bits
        curve.append({"epoch": epoch, "fit_bits": fit_bits, "held_out_bits": held_bits, "kept": improved})
        if progress is not None:
            progress(epoch, config.max_epochs, held_bits)
        if improved:
            best, best_state, stale = held_bits, copy.deepcopy(net.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    net.load_state_dict(best_state)
    return net, curve


def _epoch(net, optimizer, fit: Probes, config: BatchConfig, generator) -> float:
    """One pass over shuffled fitting batches; returns the mean training objective in bits."""
    net.train()
    total = 0.0
    for chunk in even_chunks(torch.randperm(len(fit), generator=generator).to(fit.x1.device), config.batch_size):
        batch = fit.subset(chunk)
        terms, _ = conditional_terms(net(batch.x1, batch.x2), batch.p1, batch.p2,
                                     config.sinkhorn_tol, config.sinkhorn_max_iter)
        loss = terms.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(chunk)
    return float(to_bits(torch.tensor(total / len(fit))))


@torch.no_grad()
def _objective_bits(net, data: Probes, config: BatchConfig, device) -> float:
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


def _reference(held: Probes, config: BatchConfig) -> Probes:
    """The held-out samples a new sample is scored among: a seeded batch_size - 1 of them."""
    order = torch.randperm(len(held), generator=torch.Generator().manual_seed(config.seed + 2))
    return held.subset(order[: config.batch_size - 1].sort().values)


def pointwise_terms(p1, p2, p12, p_y, cond_nats) -> dict[str, torch.Tensor]:
    """Per-sample informations and atoms in bits from the probes and the anchor terms."""
    i1, i2, i12 = (to_bits(kl_nats(p, p_y[None])) for p in (p1, p2, p12))
    iq = i1 + to_bits(cond_nats)
    return {"r": i1 + i2 - iq, "u1": iq - i2, "u2": iq - i1, "s": i12 - iq,
            "i1": i1, "i2": i2, "i12": i12, "iq": iq}


class BatchPIDEstimator:
    """A fitted BATCH estimator: scores held-out data, or new samples among stored reference samples."""

    def __init__(self, net: AlignmentNet, config: BatchConfig, calibration: Calibration, reference: Probes):
        self.net, self.config, self.calibration, self.reference = net, config, calibration, reference

    @torch.no_grad()
    def score(self, data: Probes, device=None) -> tuple[dict[str, torch.Tensor], dict]:
        """Pointwise atoms of already-calibrated samples, evaluated in seeded random batches (float64)."""
        device = device or next(self.net.parameters()).device
        net = copy.deepcopy(self.net).to(device, torch.float64).eval()
        data64 = data.to(device, torch.float64)
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(self.config.seed + 3))
        cond = torch.empty(len(data), dtype=torch.float64, device=device)
        residuals, iterations, converged = [], [], True
        for chunk in even_chunks(order.to(device), self.config.batch_size):
            batch = data64.subset(chunk)
            terms, plan = conditional_terms(net(batch.x1, batch.x2), batch.p1, batch.p2,
                                            self.config.sinkhorn_tol * 0.1, self.config.sinkhorn_max_iter)
            cond[chunk] = terms
            residuals.append(plan.residual)
            iterations.append(plan.iterations)
            converged &= plan.converged
        p_y = self.calibration.p_y.to(device, torch.float64)
        values = pointwise_terms(data64.p1, data64.p2, data64.p12, p_y, cond)
        sinkhorn = {"residual": max(residuals), "iterations": max(iterations), "converged": converged}
        return {name: value.cpu() for name, value in values.items()}, sinkhorn

    def to_bytes(self) -> bytes:
        """The estimator as safetensors bytes (see estimator_to_bytes)."""
        return estimator_to_bytes(self)

    @classmethod
    def from_bytes(cls, blob: bytes, device: str | torch.device = "cpu") -> "BatchPIDEstimator":
        """Load an estimator saved with to_bytes."""
        return estimator_from_bytes(blob, device)

    def save(self, path) -> None:
        """Write the estimator to a .safetensors file."""
        with open(path, "wb") as handle:
            handle.write(self.to_bytes())

    @classmethod
    def load(cls, path, device: str | torch.device = "cpu") -> "BatchPIDEstimator":
        """Read an estimator written by save."""
        with open(path, "rb") as handle:
            return cls.from_bytes(handle.read(), device)

    def pointwise(self, x1, x2, p_y_x1, p_y_x2, p_y_x1x2) -> dict[str, torch.Tensor]:
        """Pointwise atoms of new samples, each scored as one anchor inside the stored reference batch."""
        new = Probes(*check_sample_set(x1, x2, p_y_x1, p_y_x2, p_y_x1x2, "new sample"))
        new = Probes(new.x1, new.x2, apply_log_weights(new.p1, self.calibration.log_w1),
                     apply_log_weights(new.p2, self.calibration.log_w2), new.p12)
        rows = [self._score_one(new.subset(torch.tensor([i]))) for i in range(len(new))]
        return {name: torch.cat([row[name] for row in rows]) for name in rows[0]}

    @torch.no_grad()
    def _score_one(self, sample: Probes) -> dict[str, torch.Tensor]:
        device = next(self.net.parameters()).device
        batch = Probes(*(torch.cat([getattr(self.reference, n), getattr(sample, n)])
                         for n in ("x1", "x2", "p1", "p2", "p12"))).to(device, torch.float64)
        net = copy.deepcopy(self.net).to(device, torch.float64).eval()
        terms, _ = conditional_terms(net(batch.x1, batch.x2), batch.p1, batch.p2,
                                     self.config.sinkhorn_tol * 0.1, self.config.sinkhorn_max_iter)
        values = pointwise_terms(batch.p1[-1:], batch.p2[-1:], batch.p12[-1:],
                                 self.calibration.p_y.to(device, torch.float64), terms[-1:])
        return {name: value.cpu() for name, value in values.items()}


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
        "negative_atoms": {name: atoms[name] for name in ATOMS if atoms[name] < 0},
        "negative_pointwise_fraction": {name: float((pointwise[name] < 0).double().mean()) for name in ATOMS},
    }


_PROBE_FIELDS = ("x1", "x2", "p1", "p2", "p12")


def estimator_to_bytes(estimator: BatchPIDEstimator) -> bytes:
    """Serialise a fitted estimator as safetensors: network weights, calibration, reference batch, config."""
    net = estimator.net
    header = {"config": asdict(estimator.config),
              "shape": {"d1": net.embed1[0].in_features, "d2": net.embed2[0].in_features, "k": net.k}}
    tensors = {f"net.{name}": value.detach().cpu().contiguous() for name, value in net.state_dict().items()}
    for name in ("p_y", "log_w1", "log_w2"):
        tensors[f"calibration.{name}"] = getattr(estimator.calibration, name).clone()
    for name in _PROBE_FIELDS:
        tensors[f"reference.{name}"] = getattr(estimator.reference, name).clone()
    tensors["header_json"] = torch.frombuffer(bytearray(json.dumps(header).encode()), dtype=torch.uint8)
    return safetensors.torch.save(tensors)


def estimator_from_bytes(blob: bytes, device: str | torch.device = "cpu") -> BatchPIDEstimator:
    """Rebuild a fitted estimator saved by estimator_to_bytes (no pickle involved)."""
    tensors = safetensors.torch.load(blob)
    header = json.loads(bytes(tensors.pop("header_json").tolist()).decode())
    config = BatchConfig(**header["config"])
    shape = header["shape"]
    net = AlignmentNet(shape["d1"], shape["d2"], shape["k"], config.hidden_dim, config.embed_dim,
                       config.layers, config.logit_cap)
    net.load_state_dict({name[4:]: value for name, value in tensors.items() if name.startswith("net.")})
    calibration = Calibration(tensors["calibration.p_y"], tensors["calibration.log_w1"],
                              tensors["calibration.log_w2"], float("nan"), float("nan"))
    reference = Probes(*(tensors[f"reference.{name}"] for name in _PROBE_FIELDS))
    return BatchPIDEstimator(net.to(resolve_device(device)), config, calibration, reference)
