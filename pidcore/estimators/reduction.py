"""Reduce per-layer sources to a few whitened PCA coordinates, optionally Gaussianise every coordinate marginally, and
stack them with the target as the joint samples the Gaussian PID reads (pidcore.estimators.gaussian).

Everything is fitted on the FITTING rows only and applied to the EVALUATION rows (the complement); the covariance and
any bootstrap are taken on the evaluation rows. Tensors are float64, batched over a leading layer dimension, and stay
on the device they came on.

Dimension rule. Per source, one dimension k is used for every layer (the joint samples are one tensor [L, n_eval, D]):
k = min(components, source dim, n_fit - 1, fewest non-negligible directions of any layer, the bias cap). A direction
is negligible when its fitting variance is at most RELATIVE_VARIANCE_FLOOR (1e-9) of the layer's largest, and a source
whose largest fitting variance is at most CONSTANT_FLOOR (1e-12) of its mean square has none, so a constant feature
or duplicated columns never reach the joint covariance. The bias cap bounds the leading-order plug-in bias of
I(X1, X2; Y), (d1 + d2) dy / (2 n_eval ln 2) bits, by BIAS_BUDGET_BITS (0.05): each source gets
k <= floor(ln 2 * 0.05 * n_eval / dy), i.e. D - dy <= n_eval / (14.4 dy), but at least 1 (fewer than 14.4 dy
evaluation rows exceed the budget; the record's `bias_bound_bits` says by how much). Measured on independent Gaussian
data (all atoms 0) with this package's estimator, the plug-in I(X1, X2; Y) followed that formula within 20% (mostly
10%) for (D - dy) / n up to 0.13 and dy = 1, 3 (n = 500, 2,000), and R and S each carried about half of it; a looser
D <= n_eval / 4 would leave about 0.18 dy bits of bias in I(X1, X2; Y).

Marginal Gaussianisation maps each coordinate through the fitting rows' mid-rank empirical CDF, (rank - 1/2) / n_fit
with tied values sharing their mean rank, linearly interpolated between fitting values and held at the end values
outside them (so it stays within [1 / (2 n_fit), 1 - 1 / (2 n_fit)]), then through the standard normal quantile. It
is monotone in each coordinate, so it keeps the mutual informations of scalar variables; it acts on the PCA
coordinates, not the raw features, and it cannot change the dependence between variables (their copula).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from pidcore.atoms import GAUSSIAN_COMPONENTS

RELATIVE_VARIANCE_FLOOR = 1e-9  # a direction with at most this fraction of the layer's largest variance is dropped
CONSTANT_FLOOR = 1e-12  # a source whose largest variance is at most this fraction of its mean square is constant
BIAS_BUDGET_BITS = 0.05  # the leading-order plug-in bias allowed in I(X1, X2; Y)
MIN_FIT_ROWS = 10
DIMENSION_RULE = (f"k = min(components, source dim, n_fit - 1, non-negligible directions (variance > "
                  f"{RELATIVE_VARIANCE_FLOOR:g} of the largest) in every layer, floor(ln2 * {BIAS_BUDGET_BITS:g} * "
                  "n_eval / dy)), one k per source for all layers")


@dataclass(frozen=True)
class PCAReduction:
    """A per-layer whitening PCA fitted on fitting rows: the centre, the basis and what it kept."""

    mean: torch.Tensor  # [L, d]
    basis: torch.Tensor  # [L, d, k]: eigenvectors divided by the root of their fitting variance
    rank: list[int]  # non-negligible directions of each layer, before any cap
    variance_kept: list[float]  # the fraction of each layer's fitting variance the k directions hold

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The whitened coordinates [L, n, k] of rows x [L, n, d] (unit variance on the fitting rows)."""
        return (x - self.mean[:, None, :]) @ self.basis


@dataclass(frozen=True)
class MarginalGaussianiser:
    """Each coordinate's fitting values, sorted, and their mid-rank positions: the knots of its empirical CDF."""

    knots: torch.Tensor  # [..., k, m]
    positions: torch.Tensor  # [..., k, m], in ranks: (lo + hi) / 2 with lo, hi the counts below and up to the knot

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Rows x [..., n, k] through the interpolated empirical CDF and the standard normal quantile, [..., n, k]."""
        values = x.transpose(-1, -2).contiguous()
        last = self.knots.shape[-1] - 1
        above = torch.searchsorted(self.knots, values, right=True)
        left, right = (above - 1).clamp(0, last), above.clamp(max=last)
        low, high = self.knots.gather(-1, left), self.knots.gather(-1, right)
        gap = high - low
        weight = torch.where(gap > 0, (values - low) / torch.where(gap > 0, gap, 1.0), 0.0).clamp(0.0, 1.0)
        low_position = self.positions.gather(-1, left)
        position = low_position + weight * (self.positions.gather(-1, right) - low_position)
        return torch.special.ndtri(position / (last + 1)).transpose(-1, -2)


class PreparedSamples(NamedTuple):
    """Joint evaluation samples [L, n_eval, d1 + d2 + dy] of (X1, X2, Y), the source dimensions and a JSON record."""

    samples: torch.Tensor
    d1: int
    d2: int
    record: dict


def fit_pca(fit_rows: torch.Tensor, components: int) -> PCAReduction:
    """Whitening PCA of fitting rows [L, m, d] to at most `components` directions, one count for all layers.

    The count is also capped by d, m - 1 and each layer's non-negligible directions (module docstring); a source
    with no such direction in some layer is refused. Eigenvectors are signed so their largest loading is positive.
    """
    rows = fit_rows.shape[-2]
    variances, vectors = _spectrum(fit_rows)
    rank = _directions(fit_rows, variances).sum(-1).tolist()
    if min(rank) == 0:
        layers = [layer for layer, count in enumerate(rank) if count == 0]
        raise ValueError(f"a source is constant on the fitting rows in layer(s) {layers}; it has no direction to keep")
    mean = fit_rows.mean(-2)
    k = min(components, fit_rows.shape[-1], rows - 1, min(rank))
    top = vectors[..., :k]
    signs = torch.sign(top.gather(-2, top.abs().argmax(-2, keepdim=True)))
    basis = top * signs / variances[:, None, :k].sqrt()
    variance_kept = variances[:, :k].sum(-1) / variances.clamp(min=0).sum(-1)
    return PCAReduction(mean, basis, rank, variance_kept.tolist())


def constant_layers(fit_rows: torch.Tensor) -> list[int]:
    """The layers of fitting rows [L, m, d] where the source is constant (no non-negligible direction)."""
    counts = _directions(fit_rows, _spectrum(fit_rows)[0]).sum(-1)
    return [layer for layer, count in enumerate(counts.tolist()) if count == 0]


def _spectrum(fit_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues [L, d] and eigenvectors [L, d, d] of each layer's fitting covariance, largest first."""
    centred = fit_rows - fit_rows.mean(-2, keepdim=True)
    variances, vectors = torch.linalg.eigh(centred.transpose(-1, -2) @ centred / (fit_rows.shape[-2] - 1))
    return variances.flip(-1), vectors.flip(-1)


def _directions(fit_rows: torch.Tensor, variances: torch.Tensor) -> torch.Tensor:
    """Which directions [L, d] are non-negligible: none in a constant layer (module docstring)."""
    power = (fit_rows * fit_rows).sum(-1).mean(-1)
    largest = variances[:, 0]
    return (variances > RELATIVE_VARIANCE_FLOOR * largest[:, None]) & (largest > CONSTANT_FLOOR * power)[:, None]


def fit_gaussianiser(fit_rows: torch.Tensor) -> MarginalGaussianiser:
    """The marginal Gaussianiser of each coordinate of fitting rows [..., m, k] (module docstring)."""
    knots = fit_rows.transpose(-1, -2).sort(-1).values.contiguous()
    below = torch.searchsorted(knots, knots, right=False)
    up_to = torch.searchsorted(knots, knots, right=True)
    return MarginalGaussianiser(knots, (below + up_to).to(knots.dtype) / 2)


def components_cap(n_eval: int, dy: int) -> int:
    """The most components per source that keep the plug-in bias of I(X1, X2; Y) within BIAS_BUDGET_BITS."""
    return math.floor(math.log(2) * BIAS_BUDGET_BITS * n_eval / dy)


def plug_in_bias_bits(sources: int, dy: int, n_eval: int) -> float:
    """The leading-order plug-in bias of I(X1, X2; Y) in bits for d1 + d2 = `sources` reduced dimensions."""
    return sources * dy / (2 * n_eval * math.log(2))


def prepare(x1: torch.Tensor, x2: torch.Tensor, y: torch.Tensor, fit: torch.Tensor, *,
            components: int = GAUSSIAN_COMPONENTS, gaussianise: bool = False) -> PreparedSamples:
    """Reduce x1 [L, n, d1], x2 [L, n, d2] (and Gaussianise them and y [n] or [n, dy] if asked), fitted on the rows
    where the boolean mask fit [n] is True, and return the joint samples of the other rows for the Gaussian PID."""
    x1, x2, y, fit = _validated(x1, x2, y, fit, components)
    n_fit, n_eval, dy = int(fit.sum()), int((~fit).sum()), y.shape[-1]
    cap = max(1, components_cap(n_eval, dy))
    target_fit, target_eval = y[fit], y[~fit]
    _check_target(target_fit)
    reductions = [fit_pca(source[:, fit], min(components, cap)) for source in (x1, x2)]
    parts = [reduction.apply(source[:, ~fit]) for reduction, source in zip(reductions, (x1, x2))]
    if gaussianise:
        parts = [fit_gaussianiser(reduction.apply(source[:, fit])).apply(part)
                 for reduction, source, part in zip(reductions, (x1, x2), parts)]
        target_eval = fit_gaussianiser(target_fit).apply(target_eval)
    parts.append(target_eval.expand(x1.shape[0], -1, -1))
    d1, d2 = parts[0].shape[-1], parts[1].shape[-1]
    record = {"components_requested": components, "components": {"x1": d1, "x2": d2}, "cap": cap,
              "rank": {"x1": reductions[0].rank, "x2": reductions[1].rank},
              "variance_kept": {"x1": reductions[0].variance_kept, "x2": reductions[1].variance_kept},
              "gaussianised": gaussianise, "n_fit": n_fit, "n_eval": n_eval, "dy": dy, "rule": DIMENSION_RULE,
              "bias_bound_bits": plug_in_bias_bits(d1 + d2, dy, n_eval)}
    return PreparedSamples(torch.cat(parts, dim=-1), d1, d2, record)


def _validated(x1: torch.Tensor, x2: torch.Tensor, y: torch.Tensor, fit: torch.Tensor,
               components: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check shapes, finiteness and the split; return float64 sources and a 2-D target on x1's device, a bool mask."""
    device = x1.device
    x1, x2 = x1.detach().to(torch.float64), x2.detach().to(device, torch.float64)
    y = y.detach().to(device, torch.float64)
    y = y[:, None] if y.ndim == 1 else y
    if x1.ndim != 3 or x2.ndim != 3 or x1.shape[:2] != x2.shape[:2] or y.ndim != 2 or len(y) != x1.shape[1]:
        raise ValueError(f"need x1 [L, n, d1], x2 [L, n, d2] and y [n] or [n, dy] with the same L and n; got "
                         f"{tuple(x1.shape)}, {tuple(x2.shape)}, {tuple(y.shape)}")
    if fit.dtype != torch.bool or fit.shape != (x1.shape[1],):
        raise ValueError(f"fit must be a boolean mask [{x1.shape[1]}], got {fit.dtype} {tuple(fit.shape)}")
    if isinstance(components, bool) or not isinstance(components, int) or components < 1:
        raise ValueError(f"components must be a positive integer, got {components!r}")
    for name, tensor in (("x1", x1), ("x2", x2), ("y", y)):
        if tensor.shape[-1] == 0 or not torch.isfinite(tensor).all():
            raise ValueError(f"{name} is empty or contains NaN or infinite values")
    fit = fit.to(device)
    if int(fit.sum()) < MIN_FIT_ROWS:
        raise ValueError(f"need at least {MIN_FIT_ROWS} fitting rows, got {int(fit.sum())}")
    return x1, x2, y, fit


def _check_target(target_fit: torch.Tensor) -> None:
    """Refuse a target whose fitting covariance is rank-deficient (a constant column or one mixing the others)."""
    centred = target_fit - target_fit.mean(0)
    variances = torch.linalg.eigvalsh(centred.T @ centred / (len(target_fit) - 1))
    power = (target_fit * target_fit).sum(-1).mean()
    if variances[0] <= RELATIVE_VARIANCE_FLOOR * variances[-1] or variances[-1] <= CONSTANT_FLOOR * power:
        raise ValueError("the target's fitting covariance is singular: a column is constant or a mix of the others")
