"""Marginal consistency of the probes: the gap between their mean p(y) and p_y, and the calibrated rescaling."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Calibration:
    """p_y of a split, the raw marginal gaps, and the per-class log weights applied (zeros when published)."""

    p_y: torch.Tensor
    log_w1: torch.Tensor
    log_w2: torch.Tensor
    gap1: float
    gap2: float


def marginal_gap(p: torch.Tensor, p_y: torch.Tensor) -> float:
    """Total-variation distance between a probe's mean p(y) over the samples and p_y."""
    return float(0.5 * (p.mean(0) - p_y).abs().sum())


def apply_log_weights(p: torch.Tensor, log_weights: torch.Tensor) -> torch.Tensor:
    """Rescale each class by exp(weight) and renormalise every row."""
    scaled = p * log_weights.exp()
    return scaled / scaled.sum(1, keepdim=True)


def calibration_log_weights(
    p: torch.Tensor, p_y: torch.Tensor, tol: float = 1e-12, max_iter: int = 10_000
) -> torch.Tensor:
    """Per-class log weights w such that the rows of p rescaled by exp(w) average to p_y (iterative scaling).

    Classes with p_y = 0 get weight -inf (they vanish); a class that p never supports cannot be matched and raises.
    """
    support = p_y > 0
    unreachable = support & (p.sum(0) <= 0)
    if unreachable.any():
        raise ValueError(f"cannot calibrate: classes {unreachable.nonzero().flatten().tolist()} have "
                         "p_y > 0 but zero probability in every row of the probe")
    log_w = torch.where(support, torch.zeros_like(p_y), torch.full_like(p_y, float("-inf")))
    for _ in range(max_iter):
        mean = apply_log_weights(p, log_w).mean(0)
        if (mean - p_y).abs().max() < tol:
            break
        log_w = torch.where(support, log_w + torch.log(p_y.clamp(min=1e-300)) - torch.log(mean), log_w)
    return torch.where(support, log_w - log_w[support].mean(), log_w)
