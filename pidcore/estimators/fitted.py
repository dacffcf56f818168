"""A fitted BATCH estimator: the data it works on, how it scores samples, and how it is saved (no pickle)."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict

import safetensors.torch
import torch

from pidcore.devices import resolve_device
from pidcore.estimators.alignment import AlignmentNet
from pidcore.estimators.batch_config import BatchConfig
from pidcore.estimators.batch_terms import conditional_terms
from pidcore.estimators.calibration import Calibration, apply_log_weights
from pidcore.estimators.information import kl_nats, to_bits
from pidcore.estimators.sample_set import TENSOR_NAMES, SampleSet, even_chunks
from pidcore.estimators.validation import check_sample_set


def pointwise_terms(p1, p2, p12, p_y, cond_nats) -> dict[str, torch.Tensor]:
    """Per-sample atoms and informations in bits (keys ATOMS + INFORMATIONS) from the probes and the anchor terms."""
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
        batch = SampleSet(*(torch.cat([getattr(self.reference, name), getattr(sample, name)])
                            for name in TENSOR_NAMES)).to(device, torch.float64)
        net = copy.deepcopy(self.net).to(device, torch.float64).eval()
        terms, _ = conditional_terms(net(batch.x1, batch.x2), batch.p1, batch.p2,
                                     self.config.sinkhorn_tol * 0.1, self.config.sinkhorn_max_iter)
        values = pointwise_terms(batch.p1[-1:], batch.p2[-1:], batch.p12[-1:],
                                 self.calibration.p_y.to(device, torch.float64), terms[-1:])
        return {name: value.cpu() for name, value in values.items()}


def estimator_to_bytes(estimator: BatchPIDEstimator) -> bytes:
    """Serialise a fitted estimator as safetensors: network weights, calibration, reference batch, config."""
    net = estimator.net
    header = {"config": asdict(estimator.config),
              "shape": {"d1": net.embed1[0].in_features, "d2": net.embed2[0].in_features, "k": net.k}}
    tensors = {f"net.{name}": value.detach().cpu().contiguous() for name, value in net.state_dict().items()}
    for name in ("p_y", "log_w1", "log_w2"):
        tensors[f"calibration.{name}"] = getattr(estimator.calibration, name).clone()
    for name in TENSOR_NAMES:
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
    reference = SampleSet(*(tensors[f"reference.{name}"] for name in TENSOR_NAMES))
    return BatchPIDEstimator(net.to(resolve_device(device)), config, calibration, reference)
