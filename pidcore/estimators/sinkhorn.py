"""Log-domain Sinkhorn scaling of [n1, n2, k] kernels, all k labels (and any stack of kernels) at once, finished
by Newton steps.

Scaling exp(logits) so that rows sum to r and columns to c (per label y) is the minimisation of the
convex function phi(g) = sum_a r_a logsumexp_b(logits_ab + g_b) - sum_b c_b g_b, whose gradient is
the column residual. Plain Sinkhorn iterations are coordinate steps on it and crawl when the kernel
is nearly block-diagonal (as BATCH's kernels become when a pairing is learnt); a few Newton steps on
phi, with backtracking, finish the job in a handful of iterations.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch


@dataclass
class SinkhornResult:
    """Scaled log-plan pieces: log q = logits + f[..., :, None, :] + g[..., None, :, :]; rows are exact, columns
    within `residual` (the largest over the stacked kernels)."""

    f: torch.Tensor
    g: torch.Tensor
    residual: float
    iterations: int
    converged: bool


def sinkhorn_log(
    logits: torch.Tensor,
    log_rows: torch.Tensor,
    log_cols: torch.Tensor,
    tol: float = 1e-6,
    max_iter: int = 100,
    sinkhorn_steps: int = 5,
) -> SinkhornResult:
    """Scale exp(logits) [..., n1, n2, k] so that, for every label y, rows sum to exp(log_rows) [..., n1, k] and
    columns to exp(log_cols) [..., n2, k]; leading dimensions stack independent kernels, solved together.

    Row and column totals of each label must agree (the caller balances them). `residual` is the
    relative L1 error of the column sums once the rows are exact. Not meeting `tol` within
    `max_iter` steps is reported in the result and warned about, never hidden.
    """
    if torch.is_grad_enabled() and logits.requires_grad:
        return _differentiable(logits, log_rows, log_cols, tol, max_iter, sinkhorn_steps)
    cols = log_cols.exp()
    mass = cols.sum((-2, -1))
    g = torch.zeros_like(log_cols)
    for iteration in range(max_iter + 1):
        f = _row_potential(logits, g, log_rows)
        plan = (logits + f[..., :, None, :] + g[..., None, :, :]).exp()
        excess = plan.sum(-3) - cols
        residual = float((excess.detach().abs().sum((-2, -1)) / mass).max())
        if residual <= tol:
            return SinkhornResult(f, g, residual, iteration, True)
        if iteration == max_iter:
            break
        if iteration < sinkhorn_steps:
            g = g - torch.log(plan.sum(-3)) + log_cols
        else:
            g = _newton_step(logits, g, plan, excess, log_rows, log_cols)
    warnings.warn(f"Sinkhorn stopped at {max_iter} steps with column residual {residual:.2e} > {tol:.0e}")
    return SinkhornResult(f, g, residual, max_iter, False)


def _row_potential(logits: torch.Tensor, g: torch.Tensor, log_rows: torch.Tensor) -> torch.Tensor:
    """The row scaling f that makes every row exact for column scaling g."""
    return log_rows - torch.logsumexp(logits + g[..., None, :, :], -2)


def _differentiable(logits, log_rows, log_cols, tol, max_iter, sinkhorn_steps, unrolled: int = 3):
    """Solve without tracking gradients, then take a few tracked Sinkhorn steps from the solution.

    At the fixed point those steps change nothing numerically, but their backward pass gives
    the gradient of the scaled plan with respect to the logits (truncated implicit differentiation)
    at a fraction of the cost of differentiating through every Newton solve.
    """
    with torch.no_grad():
        solved = sinkhorn_log(logits, log_rows, log_cols, tol, max_iter, sinkhorn_steps)
    g = solved.g
    for _ in range(unrolled):
        f = _row_potential(logits, g, log_rows)
        g = log_cols - torch.logsumexp(logits + f[..., :, None, :], -3)
    f = _row_potential(logits, g, log_rows)
    return SinkhornResult(f, g, solved.residual, solved.iterations, solved.converged)


def _newton_step(logits, g, plan, excess, log_rows, log_cols) -> torch.Tensor:
    """One damped Newton step on phi(g) per kernel; the Hessian is diag(colsum) - Q^T diag(1/rowsum) Q per label.
    A kernel whose line search finds no descent takes a plain Sinkhorn step instead."""
    q = plan.movedim(-1, -3).double()
    weighted = q / q.sum(-1, keepdim=True).clamp(min=1e-300)
    hessian = torch.diag_embed(q.sum(-2)) - weighted.transpose(-1, -2) @ q
    step = _solve_psd(hessian, excess.movedim(-1, -2)).movedim(-2, -1).to(g.dtype)
    current = _phi(logits, g, log_rows, log_cols)
    slack = 16 * torch.finfo(g.dtype).eps * (current.abs() + 1.0)
    slope = (excess * step).detach().sum((-2, -1))
    alpha = torch.ones_like(current)
    accepted = torch.zeros_like(current, dtype=torch.bool)
    for _ in range(30):
        trial = g + _per_kernel(alpha) * step
        accepted |= _phi(logits, trial, log_rows, log_cols) <= current + 0.25 * alpha * slope + slack
        if accepted.all():
            break
        alpha = torch.where(accepted, alpha, alpha / 2)
    sinkhorn = g - torch.log(plan.sum(-3)) + log_cols
    return torch.where(_per_kernel(accepted), g + _per_kernel(alpha) * step, sinkhorn)


def _per_kernel(values: torch.Tensor) -> torch.Tensor:
    """One value per stacked kernel, broadcast over its [n2, k] potential."""
    return values[..., None, None]


def _solve_psd(hessian: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """-H^-1 rhs per kernel and label in float64 with a tiny ridge (H is PSD with the all-ones null vector)."""
    ridge = 1e-10 * hessian.diagonal(dim1=-2, dim2=-1).amax(-1).clamp(min=1e-30)
    eye = torch.eye(hessian.shape[-1], dtype=hessian.dtype, device=hessian.device)
    factor = torch.linalg.cholesky(hessian + ridge[..., None, None] * eye)
    return -torch.cholesky_solve(rhs.double()[..., None], factor)[..., 0]


def _phi(logits, g, log_rows, log_cols) -> torch.Tensor:
    """The convex potential whose minimiser scales each kernel (up to a constant), one value per kernel."""
    with torch.no_grad():
        rows = log_rows.exp()
        return ((rows * torch.logsumexp(logits + g[..., None, :, :], -2)).sum((-2, -1))
                - (log_cols.exp() * g).sum((-2, -1)))


@dataclass
class WeightedScaling:
    """Plain-domain scalings of one kernel for many weightings: q(a, b, y) = u[y, a, r] K[y, a, b] v[y, b, r] for
    weighting r; rows exact, columns within `residual` (the largest over the weightings)."""

    u: torch.Tensor
    v: torch.Tensor
    residual: float
    iterations: int
    converged: bool


def sinkhorn_weighted(kernel: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, weights: torch.Tensor,
                      tol: float, max_iter: int, relaxation: float = 1.0,
                      log_v: torch.Tensor | None = None) -> WeightedScaling:
    """Scale one positive kernel [k, n, n] for R weightings of its samples at once (weights [n, R]: how often each
    sample is drawn): rows to `rows` [k, n] and columns to `cols` [k, n, R] per drawn copy.

    A sample drawn m times is m identical rows and columns whose scalings are equal at the solution, so the
    kernel of a bootstrap resample never needs gathering: every step is one matrix product K @ [n, R] per label,
    shared by all resamples. Over-relaxed (log v moves `relaxation` times the Sinkhorn step), from `log_v`
    [k, n, R] when given. `residual` is the relative L1 error of the drawn copies' column sums; not meeting `tol`
    within `max_iter` steps is warned about.
    """
    mass = (rows @ weights).sum(0)
    log_v = torch.zeros_like(cols) if log_v is None else log_v
    for iteration in range(max_iter + 1):
        v = log_v.exp()
        u = rows[..., None] / (kernel @ (weights * v))
        col_sums = kernel.transpose(-1, -2) @ (weights * u)
        residual = float((((v * col_sums - cols).abs() * weights).sum((0, 1)) / mass).max())
        if residual <= tol:
            return WeightedScaling(u, v, residual, iteration, True)
        if iteration == max_iter:
            break
        log_v = log_v + relaxation * (torch.log(cols / col_sums) - log_v)
    warnings.warn(f"weighted Sinkhorn stopped at {max_iter} steps with column residual {residual:.2e} > {tol:.0e}")
    return WeightedScaling(u, v, residual, max_iter, False)
