"""Intervals on dataset atoms: percentiles of the atoms over bootstrap resamples of the evaluation samples.

The resamples are scored again with the fitted networks (BatchPIDEstimator.resampled_atoms), not refitted: the
interval shows how much the atoms would move with another evaluation sample of the same size, for the fitted
alignment. Refitting on other splits (`--repeats`) shows what the split itself adds.
"""

from __future__ import annotations

import torch


def percentile_interval(values: torch.Tensor, confidence: float) -> tuple[float, float]:
    """The central `confidence` range of resampled values; NaN bounds when there are fewer than 2 of them."""
    if len(values) < 2 or not torch.isfinite(values).all():
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2
    low, high = torch.quantile(values.double(), torch.tensor([tail, 1 - tail], dtype=torch.float64))
    return float(low), float(high)
