"""A fitted BATCH estimator: the data it works on, how it scores samples, and how it is saved (no pickle)."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass

import safetensors.torch
import torch

from pidcore.devices import resolve_device
from pidcore.estimators.alignment import AlignmentNet
from pidcore.estimators.batch_terms import conditional_terms
from pidcore.estimators.calibration import apply_log_weights
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
class SampleSet:
    """One split's features and probe distributions (p1, p2 already calibrated if the mode asks)."""

    x1: torch.Tensor
    x2: torch.Tensor
    p1: torch.Tensor
    p2: torch.Tensor
    p12: torch.Tensor

    def subset(self, index: torch.Tensor) -> "SampleSet":
        return SampleSet(*(getattr(self, name)[index] for name in ("x1", "x2", "p1", "p2", "p12")))

    def to(self, device: torch.device, dtype: torch.dtype) -> "SampleSet":
        return SampleSet(*(getattr(self, name).to(device, dtype) for name in ("x1", "x2", "p1", "p2", "p12")))

    def __len__(self) -> int:
        return len(self.x1)


@dataclass
class Calibration:
    """p_y of a split, the raw marginal gaps, and the per-class log weights applied (zeros when published)."""

    p_y: torch.Tensor
    log_w1: torch.Tensor
    log_w2: torch.Tensor
    gap1: float
    gap2: float


def even_chunks(index: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split indices into near-equal batches of about batch_size; nothing is dropped."""
    n_chunks = max(1, round(len(index) / batch_size))
    return list(torch.tensor_split(index, n_chunks))


def pointwise_terms(p1, p2, p12, p_y, cond_nats) -> dict[str, torch.Tensor]:
    """Per-sample informations and atoms in bits from the probes and the anchor terms."""
    i1, i2, i12 = (to_bits(kl_nats(p, p_y[None])) for p in (p1, p2, p12))
    iq = i1 + to_bits(cond_nats)
    return {"r": i1 + i2 - iq, "u1": iq - i2, "u2": iq - i1, "s": i12 - iq,
            "i1": i1, "i2": i2, "i12": i12, "iq": iq}


class BatchPIDEstimator:
    """A fitted BATCH estimator: scores held-out data, or new samples among stored reference samples."""

    def __init__(self, net: AlignmentNet, config: BatchConfig, calibration: Calibration, reference: SampleSet):
        self.net, self.config, self.calibration, self.reference = net, config, calibration, reference

    @torch.no_grad()
    def score(self, data: SampleSet, device=None) -> tuple[dict[str, torch.Tensor], dict]:
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
        new = SampleSet(*check_sample_set(x1, x2, p_y_x1, p_y_x2, p_y_x1x2, "new sample"))
        new = SampleSet(new.x1, new.x2, apply_log_weights(new.p1, self.calibration.log_w1),
                     apply_log_weights(new.p2, self.calibration.log_w2), new.p12)
        rows = [self._score_one(new.subset(torch.tensor([i]))) for i in range(len(new))]
        return {name: torch.cat([row[name] for row in rows]) for name in rows[0]}

    @torch.no_grad()
    def _score_one(self, sample: SampleSet) -> dict[str, torch.Tensor]:
        device = next(self.net.parameters()).device
        batch = SampleSet(*(torch.cat([getattr(self.reference, n), getattr(sample, n)])
                         for n in ("x1", "x2", "p1", "p2", "p12"))).to(device, torch.float64)
        net = copy.deepcopy(self.net).to(device, torch.float64).eval()
        terms, _ = conditional_terms(net(batch.x1, batch.x2), batch.p1, batch.p2,
                                     self.config.sinkhorn_tol * 0.1, self.config.sinkhorn_max_iter)
        values = pointwise_terms(batch.p1[-1:], batch.p2[-1:], batch.p12[-1:],
                                 self.calibration.p_y.to(device, torch.float64), terms[-1:])
        return {name: value.cpu() for name, value in values.items()}


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
    reference = SampleSet(*(tensors[f"reference.{name}"] for name in _PROBE_FIELDS))
    return BatchPIDEstimator(net.to(resolve_device(device)), config, calibration, reference)
