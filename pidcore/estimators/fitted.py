"""A fitted BATCH estimator: the data it works on, how it scores samples, and how it is saved (no pickle)."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict

import safetensors.torch
import torch

from pidcore.atoms import ATOMS, Atoms
from pidcore.devices import resolve_device
from pidcore.estimators.alignment import AlignmentNet, alignment_net
from pidcore.estimators.batch_config import BatchConfig
from pidcore.estimators.batch_terms import conditional_terms, resampled_conditional_sums
from pidcore.estimators.calibration import Calibration, apply_log_weights
from pidcore.estimators.information import kl_nats, to_bits
from pidcore.estimators.intervals import percentile_interval
from pidcore.estimators.sample_set import TENSOR_NAMES, SampleSet, even_chunks
from pidcore.estimators.sinkhorn import RELAXATION
from pidcore.estimators.validation import check_sample_set


# From this many scoring batches of the evaluation split on, the bootstrap resamples whole batches.
CLUSTER_BOOTSTRAP_FROM = 9
# The bootstrap's re-projections (batch_terms.resampled_conditional_sums): relative column residual per resample,
# over-relaxation, step cap. Measured on planted AND, 2 x 2,048 (8 scoring batches of 256, 100 resamples, one thread),
# published / calibrated, against the same projections run to 1e-7. Each resample leaving the products at its own
# 1e-4, over-relaxed as the training solver is (1.8): every resample's atoms within 4.4e-5 / 2.8e-5 bits, in 0.86 /
# 3.1 s; over-relaxed by 1.5: 4.6e-5 / 4.8e-5 bits in 1.0 / 3.6 s; by 1.9: 0.84 / 3.0 s. At 3e-4 (relaxation 1.5)
# within 1.4e-4 bits, at 3e-5 within 1.3e-5 bits. When all resamples iterated until the slowest met 1e-3 (most
# converge within tens of steps, a few take hundreds), the bounds took 1.6 / 11.3 s for 6.2e-5 bits; the first design
# (each resampled batch gathered, Newton-finished to 1e-6 from zero) took 44.8 CPU seconds in published mode.
# Starting from the batch's own scaling halves the error at equal tolerance. The cap: one resample of a calibrated
# fit on 128 held-out AND samples took 3,761 steps to reach 1e-4.
BOOTSTRAP_TOL = 1e-4
BOOTSTRAP_RELAXATION = RELAXATION
BOOTSTRAP_MAX_ITER = 10_000


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
        data64 = data.to(device, torch.float64)
        cond = torch.empty(len(data), dtype=torch.float64, device=device)
        residuals, iterations, converged = [], [], True
        for chunk, logits in self._batches(data64, device):
            terms, plan = self._conditional(logits, data64.p1[chunk], data64.p2[chunk])
            cond[chunk] = terms
            residuals.append(plan.residual)
            iterations.append(plan.iterations)
            converged &= plan.converged
        p_y = self.calibration.p_y.to(device, torch.float64)
        values = pointwise_terms(data64.p1, data64.p2, data64.p12, p_y, cond)
        sinkhorn = {"residual": max(residuals), "iterations": max(iterations), "converged": converged}
        return {name: value.cpu() for name, value in values.items()}, sinkhorn

    @torch.no_grad()
    def resampled_atoms(self, data: SampleSet, pointwise: dict[str, torch.Tensor], resamples: int, seed: int,
                        device=None) -> dict[str, torch.Tensor]:
        """The dataset atoms of `resamples` bootstrap resamples of scored samples, [resamples] per atom.

        A sample's conditional term depends on the other samples of its scoring batch, so resampling pointwise
        atoms alone would understate how much the atoms move with the sample. With few scoring batches, each
        resample redraws every batch's samples with replacement and projects the resampled batch again (no refit;
        all resamples of a batch together, on its kernel, to BOOTSTRAP_TOL); from CLUSTER_BOOTSTRAP_FROM batches
        on, batches are independent units enough to resample whole, as scored, which costs nothing.
        """
        device = device or next(self.net.parameters()).device
        data64 = data.to(device, torch.float64)
        informations = torch.stack([pointwise[name].to(device, torch.float64) for name in ("i1", "i2", "i12")], 1)
        batches = self._batches(data64, device) if resamples else []
        generator = torch.Generator().manual_seed(seed)
        if len(batches) >= CLUSTER_BOOTSTRAP_FROM:
            return _batch_bootstrap(pointwise, [chunk.cpu() for chunk, _ in batches], resamples, generator)
        picks = _resample_picks([len(chunk) for chunk, _ in batches], resamples, generator)
        totals = torch.zeros(resamples, 4, dtype=torch.float64, device=device)
        for (chunk, logits), pick in zip(batches, picks):
            counts = torch.zeros(resamples, len(chunk), dtype=torch.float64).scatter_add_(
                1, pick, torch.ones(pick.shape, dtype=torch.float64)).to(device)
            sums, _ = resampled_conditional_sums(logits, data64.p1[chunk], data64.p2[chunk], counts, BOOTSTRAP_TOL,
                                                 BOOTSTRAP_MAX_ITER, BOOTSTRAP_RELAXATION)
            totals += torch.cat([counts @ informations[chunk], to_bits(sums)[:, None]], 1)
        return _atoms_from_means(totals.cpu() / len(data))

    def _batches(self, data64: SampleSet, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The seeded scoring batches of a split: (indices, pair logits [n, n, k]) each."""
        net = copy.deepcopy(self.net).to(device, torch.float64).eval()
        order = torch.randperm(len(data64), generator=torch.Generator().manual_seed(self.config.seed + 3))
        return [(chunk, net(data64.x1[chunk], data64.x2[chunk]))
                for chunk in even_chunks(order.to(device), self.config.batch_size)]

    def _conditional(self, logits: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor):
        """Per-anchor conditional terms (nats) of one batch, projected a little tighter than in training."""
        return conditional_terms(logits, p1, p2, self.config.sinkhorn_tol * 0.1, self.config.sinkhorn_max_iter)

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
        new = self._calibrated(x1, x2, p_y_x1, p_y_x2, p_y_x1x2, "new sample")
        rows = [self._score_one(new.subset(torch.tensor([i]))) for i in range(len(new))]
        return {name: torch.cat([row[name] for row in rows]) for name in rows[0]}

    def evaluate(self, x1, x2, p_y_x1, p_y_x2, p_y_x1x2, resamples: int | None = None,
                 seed: int | None = None) -> tuple[Atoms, dict[str, torch.Tensor]]:
        """A new evaluation set's dataset atoms with bootstrap bounds, and its pointwise atoms, scored as the
        held-out split was: among each other, in seeded batches, with this estimator's calibration and p(y)."""
        data = self._calibrated(x1, x2, p_y_x1, p_y_x2, p_y_x1x2, "evaluation set")
        pointwise, _ = self.score(data)
        return self.dataset_atoms(data, pointwise, resamples, seed), pointwise

    def dataset_atoms(self, data: SampleSet, pointwise: dict[str, torch.Tensor], resamples: int | None = None,
                      seed: int | None = None, device=None) -> Atoms:
        """The means of scored samples' pointwise atoms, with percentile bounds over `resamples` bootstrap
        resamples (the config's number and seed unless given)."""
        resamples = self.config.bootstrap if resamples is None else resamples
        seed = self.config.seed + 4 if seed is None else seed
        resampled = self.resampled_atoms(data, pointwise, resamples, seed, device)
        bounds = {name: percentile_interval(resampled[name], self.config.confidence) for name in ATOMS}
        return Atoms(*(float(pointwise[name].mean()) for name in ATOMS), bounds=bounds)

    def _calibrated(self, x1, x2, p_y_x1, p_y_x2, p_y_x1x2, label: str) -> SampleSet:
        """New samples, validated, their probes rescaled with this estimator's calibration weights."""
        new = SampleSet(*check_sample_set(x1, x2, p_y_x1, p_y_x2, p_y_x1x2, label))
        return SampleSet(new.x1, new.x2, apply_log_weights(new.p1, self.calibration.log_w1),
                         apply_log_weights(new.p2, self.calibration.log_w2), new.p12)

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


def _resample_picks(sizes: list[int], resamples: int, generator: torch.Generator) -> list[torch.Tensor]:
    """For each scoring batch, [resamples, size] positions drawn with replacement (resample by resample, batch by
    batch, so a seed gives the same resamples however they are grouped)."""
    draws = [[torch.randint(size, (size,), generator=generator) for size in sizes] for _ in range(resamples)]
    return [torch.stack([draw[index] for draw in draws]) for index in range(len(sizes))]


def _batch_bootstrap(pointwise: dict[str, torch.Tensor], chunks: list[torch.Tensor], resamples: int,
                     generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Resample whole scoring batches with replacement, each with its samples' scored informations."""
    columns = torch.stack([pointwise["i1"], pointwise["i2"], pointwise["i12"], pointwise["iq"] - pointwise["i1"]], 1)
    sums = torch.stack([columns[chunk].double().sum(0) for chunk in chunks])
    sizes = torch.tensor([len(chunk) for chunk in chunks], dtype=torch.float64)
    pick = torch.randint(len(chunks), (resamples, len(chunks)), generator=generator)
    return _atoms_from_means(sums[pick].sum(1) / sizes[pick].sum(1, keepdim=True))


def _atoms_from_means(means: torch.Tensor) -> dict[str, torch.Tensor]:
    """Atoms from mean informations [resamples, (I1, I2, I12, conditional term)] in bits."""
    i1, i2, i12, cond = means.unbind(1)
    iq = i1 + cond
    return {"r": i1 + i2 - iq, "u1": iq - i2, "u2": cond, "s": i12 - iq}


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


# Estimators saved before the presets existed stored no value for these fields; this is what they were.
_BEFORE_PRESETS = {"embedding": "capped", "standardise_features": True, "p_y_from": "evaluation"}


def estimator_from_bytes(blob: bytes, device: str | torch.device = "cpu") -> BatchPIDEstimator:
    """Rebuild a fitted estimator saved by estimator_to_bytes (no pickle involved)."""
    tensors = safetensors.torch.load(blob)
    header = json.loads(bytes(tensors.pop("header_json").tolist()).decode())
    config = BatchConfig(**{**_BEFORE_PRESETS, **header["config"]})
    shape = header["shape"]
    net = alignment_net(shape["d1"], shape["d2"], shape["k"], config)
    net.load_state_dict({name[4:]: value for name, value in tensors.items() if name.startswith("net.")})
    calibration = Calibration(tensors["calibration.p_y"], tensors["calibration.log_w1"],
                              tensors["calibration.log_w2"], float("nan"), float("nan"))
    reference = SampleSet(*(tensors[f"reference.{name}"] for name in TENSOR_NAMES))
    return BatchPIDEstimator(net.to(resolve_device(device)), config, calibration, reference)
