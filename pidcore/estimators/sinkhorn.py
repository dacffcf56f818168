"""Log-domain Sinkhorn scaling of a [n1, n2, k] kernel, all k labels at once, finished by Newton steps.

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
    """Scaled log-plan pieces: log q = logits + f[:, None] + g[None]; rows are exact, columns within `residual`."""

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
    """Scale exp(logits) so that, for every label y, rows sum to exp(log_rows) and columns to exp(log_cols).

    Row and column totals of each label must agree (the caller balances them). `residual` is the
    relative L1 error of the column sums once the rows are exact. Not meeting `tol` within
    `max_iter` steps is reported in the result and warned about, never hidden.
    """
    if torch.is_grad_enabled() and logits.requires_grad:
        return _differentiable(logits, log_rows, log_cols, tol, max_iter, sinkhorn_steps)
    rows, cols = log_rows.exp(), log_cols.exp()
    mass = cols.sum()
    g = torch.zeros_like(log_cols)
    for iteration in range(max_iter + 1):
        f = log_rows - torch.logsumexp(logits + g[None], 1)
        plan = (logits + f[:, None, :] + g[None]).exp()
        excess = plan.sum(0) - cols
        residual = float(excess.detach().abs().sum() / mass)
        if residual <= tol:
            return SinkhornResult(f, g, residual, iteration, True)
        if iteration == max_iter:
            break
        if iteration < sinkhorn_steps:
            g = g - torch.log(plan.sum(0)) + log_cols
        else:
            g = _newton_step(logits, g, plan, rows, excess, log_rows, log_cols)
    warnings.warn(f"Sinkhorn stopped at {max_iter} steps with column residual {residual:.2e} > {tol:.0e}")
    return SinkhornResult(f, g, residual, max_iter, False)


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
        f = log_rows - torch.logsumexp(logits + g[None], 1)
        g = log_cols - torch.logsumexp(logits + f[:, None, :], 0)
    f = log_rows - torch.logsumexp(logits + g[None], 1)
    return SinkhornResult(f, g, solved.residual, solved.iterations, solved.converged)


def _newton_step(logits, g, plan, rows, excess, log_rows, log_cols) -> torch.Tensor:
    """One damped Newton step on phi(g); the Hessian is diag(colsum) - Q^T diag(1/rowsum) Q per label."""
    q = plan.permute(2, 0, 1).double()
    weighted = q / q.sum(2, keepdim=True).clamp(min=1e-300)
    hessian = torch.diag_embed(q.sum(1)) - weighted.transpose(1, 2) @ q
    step = _solve_psd(hessian, excess.T).T.to(g.dtype)
    current = _phi(logits, g, log_rows, log_cols)
    slack = 16 * torch.finfo(g.dtype).eps * (abs(current) + 1.0)
    slope = float((excess * step).detach().sum())
    alpha = 1.0
    for _ in range(30):
        trial = g + alpha * step
        if _phi(logits, trial, log_rows, log_cols) <= current + 0.25 * alpha * slope + slack:
            return trial
        alpha *= 0.5
    return g - torch.log(plan.sum(0)) + log_cols


def _solve_psd(hessian: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """-H^-1 rhs per label in float64 with a tiny ridge (H is PSD with the all-ones null vector)."""
    ridge = 1e-10 * hessian.diagonal(dim1=1, dim2=2).amax(1).clamp(min=1e-30)
    eye = torch.eye(hessian.shape[-1], dtype=hessian.dtype, device=hessian.device)
    factor = torch.linalg.cholesky(hessian + ridge[:, None, None] * eye)
    return -torch.cholesky_solve(rhs.double()[..., None], factor)[..., 0]


def _phi(logits, g, log_rows, log_cols) -> float:
    """The convex potential whose minimiser scales the kernel (up to a constant)."""
    with torch.no_grad():
        rows = log_rows.exp()
        return float((rows * torch.logsumexp(logits + g[None], 1)).sum() - (log_cols.exp() * g).sum())
