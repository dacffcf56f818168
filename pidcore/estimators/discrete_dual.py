"""Primal-dual interior-point solver for the BROJA dual, batched over a stack of distributions.

    max  <lambda, p1> + <mu, p2>   s.t.  f_ij = logsumexp_y (lambda(x1,y) + mu(x2,y)) <= 0   for active pairs,

where p1 = p(x1, y), p2 = p(x2, y) and a pair (x1, x2) is active when some y is allowed for it. The multiplier w_ij
of pair (x1, x2) is q(x1, x2), and q(x1, x2, y) = w_ij softmax_y(theta_ij). Each iteration is a Mehrotra
predictor-corrector step: the step in w is eliminated from the KKT system, whose (m + n) k Hessian is factored once
and solved twice, then the full step is tried and, for the rows it fails, a ladder of shorter ones, keeping every
constraint strictly feasible and every product w s near the mean. After a short step the centring is raised, which keeps degenerate rows moving.
It starts from the independent coupling p1 p2 / p(y), which already has the right marginals. A stack is solved in
chunks of rows of similar size (small tensors stay in cache), each without the values of zero probability that all
its rows share, and finished rows leave the working set once they are a quarter of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache

import torch

_LOG2_E = 1.0 / math.log(2.0)

_CHUNK = 256
_LADDER = (1.0, 0.9, 0.7, 0.4, 0.1, 0.01)
_TO_BOUNDARY = 0.995
_NEIGHBOURHOOD = 1e-2
_LONG_STEP = 0.9
_CENTRING_AFTER_SHORT_STEP = 0.3
_RIDGE = 1e-13
_MAX_ITERATIONS = 100
_GAP_TARGET_NATS = 1e-10
_RESIDUAL_TARGET = 1e-12
_COMPACT_FRACTION = 0.25


@dataclass
class _Rows:
    """Tensors sharing a leading batch dimension."""

    def take(self, keep: torch.Tensor):
        """The same fields restricted to the rows in `keep`."""
        return type(self)(*(getattr(self, field.name)[keep] for field in fields(self)))


@dataclass
class _Problem(_Rows):
    """Constant data: cell offsets (0 allowed, -inf forbidden), active pairs (as bools, as 0/1 and their count),
    target marginals and the pinning diagonal."""

    offset: torch.Tensor
    active: torch.Tensor
    on: torch.Tensor
    pairs: torch.Tensor
    target: torch.Tensor
    pin: torch.Tensor


@dataclass
class _Point(_Rows):
    """A strictly feasible dual point (lambda, mu), the pair multipliers w, and the last step length."""

    lam: torch.Tensor
    mu: torch.Tensor
    w: torch.Tensor
    step: torch.Tensor


def solve_dual(joint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """lambda, mu and q of each distribution in [b, x1, x2, y], solved in chunks of rows of similar size."""
    lam = joint.new_zeros(joint.shape[0], joint.shape[1], joint.shape[3])
    mu = joint.new_zeros(joint.shape[0], joint.shape[2], joint.shape[3])
    q = torch.zeros_like(joint)
    for rows in torch.argsort(_effective_shape(joint), stable=True).split(_CHUNK):
        part = joint[rows]
        x1, x2, y = ((part.sum(axes) > 0).nonzero()[:, 0] for axes in ((0, 2, 3), (0, 1, 3), (0, 1, 2)))
        lam_part, mu_part, q_part = _solve_chunk(part[:, x1][:, :, x2][..., y])
        at = rows[:, None, None]
        lam[at, x1[:, None], y], mu[at, x2[:, None], y] = lam_part, mu_part
        q[at[..., None], x1[:, None, None], x2[:, None], y] = q_part
    return lam, mu, q


def _effective_shape(joint: torch.Tensor) -> torch.Tensor:
    """Each distribution's (k, m, n) without its values of zero probability, as one number that sorts like it."""
    m, n, k = ((joint.sum(axes) > 0).sum(1) for axes in ((2, 3), (1, 3), (1, 2)))
    return (k * (joint.shape[1] + 1) + m) * (joint.shape[2] + 1) + n


def _solve_chunk(joint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Iterate until every row has its gap and marginal residual on target, or cannot move."""
    full = problem = _problem(joint)
    point = _start(joint)
    result = _Point(*(value.clone() for value in (point.lam, point.mu, point.w, point.step)))
    rows = torch.arange(joint.shape[0], device=joint.device)
    for _ in range(_MAX_ITERATIONS):
        point, finished = _iterate(problem, point)
        done = int(finished.sum())
        if done == len(rows):
            break
        if done >= _COMPACT_FRACTION * len(rows):
            _store(result, rows, point)
            problem, point, rows = problem.take(~finished), point.take(~finished), rows[~finished]
    _store(result, rows, point)
    return result.lam, result.mu, result.w[..., None] * _logsumexp_softmax(_logits(full, result))[1]


def _store(result: _Point, rows: torch.Tensor, point: _Point) -> None:
    """Write the working rows back into the chunk's result."""
    result.lam[rows], result.mu[rows], result.w[rows] = point.lam, point.mu, point.w


def _problem(joint: torch.Tensor) -> _Problem:
    """Offsets, active pairs, targets, and a unit diagonal on unused variables and one gauge variable per y."""
    p1, p2 = joint.sum(2), joint.sum(1)
    allowed = (p1[:, :, None, :] > 0) & (p2[:, None, :, :] > 0)
    active = allowed.any(-1)
    offset = torch.zeros_like(joint).masked_fill(~allowed & active[..., None], float("-inf"))
    target = torch.cat([p1.flatten(1), p2.flatten(1)], 1)
    largest = torch.zeros_like(p2, dtype=torch.bool).scatter_(1, p2.argmax(1, keepdim=True), True)
    pinned = torch.cat([torch.zeros_like(p1, dtype=torch.bool), largest & (p2 > 0)], 1).flatten(1)
    unused = torch.cat([p1 == 0, p2 == 0], 1).flatten(1)
    pin = torch.diag_embed((unused | pinned).to(joint.dtype))
    on = active.to(joint.dtype)
    return _Problem(offset, active, on, on.sum((1, 2)).clamp(min=1.0), target, pin)


def _start(joint: torch.Tensor) -> _Point:
    """The independent coupling p1 p2 / p(y) as w, with theta = log of it minus 1, so f = log w - 1 < 0."""
    p1, p2, py = joint.sum(2), joint.sum(1), joint.sum((1, 2))
    half_log_py = 0.5 * torch.log(py.clamp(min=1e-300))[:, None, :]
    lam = torch.where(p1 > 0, torch.log(p1) - half_log_py - 0.5, torch.zeros_like(p1))
    mu = torch.where(p2 > 0, torch.log(p2) - half_log_py - 0.5, torch.zeros_like(p2))
    w = (p1[:, :, None, :] * p2[:, None, :, :] / py.clamp(min=1e-300)[:, None, None, :]).sum(-1)
    return _Point(lam, mu, w, torch.ones_like(py[:, 0]))


def _logits(problem: _Problem, point: _Point) -> torch.Tensor:
    """theta(x1, x2, y) = lambda(x1, y) + mu(x2, y), -inf on forbidden cells."""
    return point.lam[:, :, None, :] + point.mu[:, None, :, :] + problem.offset


def _exp(x: torch.Tensor) -> torch.Tensor:
    """exp through exp2: torch's float64 exp (and log) hand even tiny tensors to a threaded vector library, which
    on 2 threads is 10x slower for the small tensors here."""
    return torch.exp2(x * _LOG2_E)


def _logsumexp(x: torch.Tensor) -> torch.Tensor:
    """logsumexp over the last axis (which has a finite entry), with log1p for the same reason as `_exp`."""
    top = x.amax(-1)
    return top + torch.log1p(_exp(x - top[..., None]).sum(-1) - 1.0)


def _logsumexp_softmax(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logsumexp and softmax over the last axis, sharing one exponential."""
    top = x.amax(-1)
    shifted = _exp(x - top[..., None])
    total = shifted.sum(-1)
    return top + torch.log1p(total - 1.0), shifted / total[..., None]


def _marginals(x: torch.Tensor) -> torch.Tensor:
    """Sums of x[..., x1, x2, y] over x2 and over x1, flattened and concatenated like (lambda, mu)."""
    return torch.cat([x.sum(-2).flatten(-2), x.sum(-3).flatten(-2)], -1)


def _iterate(problem: _Problem, point: _Point) -> tuple[_Point, torch.Tensor]:
    """One predictor-corrector step; also report the rows that are finished (converged, or unable to move)."""
    theta = _logits(problem, point)
    lse, pi = _logsumexp_softmax(theta)
    s, w = torch.where(problem.active, -lse, 1.0), point.w
    q, products = w[..., None] * pi, w * s
    gap = products.sum((1, 2))
    centrality = torch.where(problem.active, products, float("inf")).amin((1, 2)) * problem.pairs / gap
    converged = (gap <= _GAP_TARGET_NATS) & ((_marginals(q) - problem.target).abs().amax(1) <= _RESIDUAL_TARGET)
    hessian = _hessian(problem, q, pi, w / s - w)
    hessian.diagonal(dim1=1, dim2=2).mul_(1.0 + _RIDGE)
    factor, pivots, info = torch.linalg.lu_factor_ex(hessian.mT)  # H is symmetric; H^T is already column-major
    factor = (factor.nan_to_num_(), pivots)
    _, _, d_f = _newton_step(factor, problem.target, pi)
    d_w, d_s = w * d_f / s - w, -d_f * problem.on
    affine = _boundary_step(torch.cat([w, s], 1), torch.cat([d_w, d_s], 1))[:, None, None]
    sigma = (((w + affine * d_w) * (s + affine * d_s)).sum((1, 2)) / gap.clamp(min=1e-300)).clamp(max=1.0)
    sigma = sigma * sigma * sigma
    sigma = torch.where(point.step >= _LONG_STEP, sigma, sigma.clamp(min=_CENTRING_AFTER_SHORT_STEP))
    centring = (sigma * gap).clamp(min=0.5 * _GAP_TARGET_NATS) / problem.pairs
    tau = centring[:, None, None] * problem.on - d_w * d_s
    d_lam, d_mu, d_f = _newton_step(factor, problem.target - _marginals(pi * (tau / s)[..., None]), pi)
    d_w = (tau + w * d_f) / s - w
    longest = torch.where(converged | (info != 0), 0.0, _TO_BOUNDARY * _boundary_step(w, d_w))
    share = (0.5 * centrality).clamp(max=_NEIGHBOURHOOD)
    alpha = _ladder_step(problem, theta, d_lam, d_mu, w, d_w, longest, share)
    a = alpha[:, None, None]
    return _Point(point.lam + a * d_lam, point.mu + a * d_mu, w + a * d_w, alpha), alpha == 0


def _hessian(problem: _Problem, q: torch.Tensor, pi: torch.Tensor, rank_one: torch.Tensor) -> torch.Tensor:
    """Sum over pairs of diag(q) + rank_one * pi pi^T in theta, pulled back to (lambda, mu), plus the pins."""
    batch, m, n, k = q.shape
    h = (rank_one[..., None] * pi)[..., :, None] * pi[..., None, :]
    h.diagonal(dim1=-2, dim2=-1).add_(q)
    hessian = problem.pin.clone()
    lam_lam, mu_mu = hessian[:, : m * k, : m * k], hessian[:, m * k :, m * k :]
    lam_lam.view(batch, m, k, m, k).diagonal(dim1=1, dim2=3).add_(h.sum(2).permute(0, 2, 3, 1))
    mu_mu.view(batch, n, k, n, k).diagonal(dim1=1, dim2=3).add_(h.sum(1).permute(0, 2, 3, 1))
    lam_mu = h.permute(0, 1, 3, 2, 4).reshape(batch, m * k, n * k)
    hessian[:, : m * k, m * k :] = lam_mu
    hessian[:, m * k :, : m * k] = lam_mu.transpose(1, 2)
    return hessian


def _newton_step(factor: tuple[torch.Tensor, torch.Tensor], rhs: torch.Tensor, pi: torch.Tensor):
    """Solve H dz = rhs from H's LU factors; return d_lambda, d_mu and the linearised change of each f."""
    m, n, k = pi.shape[1:]
    step = torch.linalg.lu_solve(*factor, rhs[..., None])[..., 0]
    d_lam, d_mu = step[:, : m * k].view(-1, m, k), step[:, m * k :].view(-1, n, k)
    return d_lam, d_mu, (pi * (d_lam[:, :, None, :] + d_mu[:, None, :, :])).sum(-1)


def _boundary_step(x: torch.Tensor, d_x: torch.Tensor) -> torch.Tensor:
    """Per row, the largest alpha <= 1 with x + alpha d_x >= 0 for every pair."""
    return torch.where(d_x < 0, x / -d_x, 1.0).amin((1, 2)).clamp(max=1.0)


def _ladder_step(problem: _Problem, theta, d_lam, d_mu, w, d_w, longest, share) -> torch.Tensor:
    """The longest step on the ladder below `longest` keeping every active w s >= `share` of the mean; else 0.
    The full step is checked first, and the shorter ones only for the rows it fails."""
    d_theta = d_lam[:, :, None, :] + d_mu[:, None, :, :]
    args = (problem.active, problem.on, problem.pairs, theta, d_theta, w, d_w, share)
    alpha = longest * _centred(*args, longest[:, None])[:, 0]
    failing = (longest > 0) & (alpha == 0)
    if not bool(failing.any()):
        return alpha
    rows = slice(None) if bool(failing.all()) else failing.nonzero()[:, 0]
    alphas = longest[rows, None] * _ladder(theta.dtype, theta.device)[1:]
    ok = _centred(*(value[rows] for value in args), alphas)
    alpha[rows] = (alphas * ok).gather(1, ok.to(torch.int8).argmax(1, keepdim=True))[:, 0]
    return alpha


def _centred(active, on, pairs, theta, d_theta, w, d_w, share, alphas) -> torch.Tensor:
    """For each row and step length in `alphas`, whether every active w s stays >= `share` of the mean."""
    a = alphas[:, :, None, None]
    products = -(w[:, None] + a * d_w[:, None]) * _logsumexp(theta[:, None] + a[..., None] * d_theta[:, None])
    smallest = torch.where(active[:, None], products, float("inf")).amin((-2, -1))
    mean = (products * on[:, None]).sum((-2, -1)) / pairs[:, None]
    return smallest >= share[:, None] * mean


@lru_cache(maxsize=4)
def _ladder(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The step-length fractions as a tensor."""
    return torch.tensor(_LADDER, dtype=dtype, device=device)
