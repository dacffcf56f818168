"""Input checks for the continuous estimators: clear ValueErrors instead of NaNs deep inside training."""

from __future__ import annotations

import numpy as np
import torch

PROBABILITY_TOLERANCE = 1e-3


def as_tensor(values, name: str) -> torch.Tensor:
    """Convert an array-like to a float64 CPU tensor, naming the argument on failure."""
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu", torch.float64)
    try:
        return torch.as_tensor(np.asarray(values, dtype=np.float64))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric array: {error}") from error


def check_features(x: torch.Tensor, name: str) -> None:
    """Features are a finite [n, d] matrix."""
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n_samples, dim], got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).any(1).sum())
        raise ValueError(f"{name} has NaN or infinite values in {bad} sample(s)")


def check_probabilities(p: torch.Tensor, name: str) -> torch.Tensor:
    """Probe outputs are an [n, k] matrix of distributions (k >= 2); returns them renormalised."""
    if p.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n_samples, n_labels], got shape {tuple(p.shape)}")
    if p.shape[1] < 2:
        raise ValueError(f"{name} has k={p.shape[1]} label(s); PID needs at least 2 answer options")
    if not torch.isfinite(p).all():
        raise ValueError(f"{name} has NaN or infinite probabilities")
    if (p < 0).any():
        raise ValueError(f"{name} has negative probabilities (smallest {p.min().item():.3g})")
    sums = p.sum(1)
    worst = int((sums - 1).abs().argmax())
    if abs(sums[worst].item() - 1) > PROBABILITY_TOLERANCE:
        raise ValueError(f"{name} rows must sum to 1; row {worst} sums to {sums[worst].item():.6g}")
    return p / sums[:, None]


def check_sample_set(x1, x2, p1, p2, p12, label: str) -> tuple[torch.Tensor, ...]:
    """Validate one split (features and the three probes) and return it as float64 tensors."""
    x1, x2 = as_tensor(x1, f"{label} x1"), as_tensor(x2, f"{label} x2")
    check_features(x1, f"{label} x1")
    check_features(x2, f"{label} x2")
    probes = [check_probabilities(as_tensor(p, f"{label} {name}"), f"{label} {name}")
              for p, name in ((p1, "p_y_x1"), (p2, "p_y_x2"), (p12, "p_y_x1x2"))]
    sizes = {"x1": len(x1), "x2": len(x2), "p_y_x1": len(probes[0]), "p_y_x2": len(probes[1]),
             "p_y_x1x2": len(probes[2])}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"{label}: all inputs need the same number of samples, got {sizes}")
    labels = {p.shape[1] for p in probes}
    if len(labels) != 1:
        raise ValueError(f"{label}: the three probes disagree on the number of labels: {sorted(labels)}")
    return (x1, x2, *probes)
