"""Exact PID of discrete distributions (Bertschinger et al. 2014, "BROJA").

The union information Iq = min I_q(X1,X2;Y) over q with q(x1,y) = p(x1,y) and q(x2,y) = p(x2,y)
is a convex problem. We solve its Lagrange dual,

    max  sum lambda(x1,y) p(x1,y) + sum mu(x2,y) p(x2,y)
    s.t. logsumexp_y (lambda(x1,y) + mu(x2,y)) <= 0   for every pair (x1, x2),

with a log-barrier Newton method, batched over a stack of distributions. Pairs whose optimal
q(x1,x2) is zero simply have a slack constraint, so boundary optima (AND, COPY) need no special
care. The dual value is a certified lower bound on Iq; the barrier leaves a duality gap of at
most (number of pairs) / t, which we drive below 1e-10 nats and report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pidcore.atoms import Atoms
from pidcore.devices import resolve_device
from pidcore.estimators.information import entropy_nats, mutual_information_nats, to_bits

_SUM_TOLERANCE = 1e-6
_GAP_TARGET_NATS = 1e-10
_BARRIER_GROWTH = 20.0
_MAX_NEWTON_STEPS = 60
_DECREMENT_TOLERANCE = 1e-9


@dataclass
class DiscretePID:
    """Atoms and mutual informations in bits; tensors shaped like the input's batch dimensions."""

    r: torch.Tensor
    u1: torch.Tensor
    u2: torch.Tensor
    s: torch.Tensor
    i1: torch.Tensor
    i2: torch.Tensor
    i12: torch.Tensor
    iq: torch.Tensor
    gap: torch.Tensor
    q: torch.Tensor

    def atoms(self) -> Atoms:
        """The atoms of a single distribution; for a stack, index the tensor fields."""
        if self.r.ndim:
            raise ValueError("atoms() is for a single distribution; index the fields for a stack")
        return Atoms(float(self.r), float(self.u1), float(self.u2), float(self.s))


def discrete_pid(P, device: str | torch.device = "auto") -> DiscretePID:
    """Exact BROJA PID of P[x1, x2, y], or of a stack P[..., x1, x2, y], in bits."""
    joint = _validated_joint(P, resolve_device(device))
    batch_shape = joint.shape[:-3]
    flat = joint.reshape(-1, *joint.shape[-3:])
    lam, mu, t = _solve_dual(flat)
    p1, p2, py = flat.sum(2), flat.sum(1), flat.sum((1, 2))
    dual_value = (lam * p1).sum((1, 2)) + (mu * p2).sum((1, 2))
    iq = to_bits(entropy_nats(py) + dual_value)
    i1 = to_bits(mutual_information_nats(p1))
    i2 = to_bits(mutual_information_nats(p2))
    i12 = to_bits(mutual_information_nats(flat.reshape(flat.shape[0], -1, flat.shape[-1])))
    n_pairs = _active_pairs(flat).sum((1, 2)).to(flat.dtype)
    fields = dict(
        r=i1 + i2 - iq, u1=iq - i2, u2=iq - i1, s=i12 - iq,
        i1=i1, i2=i2, i12=i12, iq=iq, gap=to_bits(n_pairs / t),
    )
    shaped = {name: value.reshape(batch_shape) for name, value in fields.items()}
    q = _primal_from_dual(flat, lam, mu, t).reshape(joint.shape)
    return DiscretePID(q=q, **shaped)


def _validated_joint(P, device: torch.device) -> torch.Tensor:
    """Check P is a finite, non-negative, normalised array of >= 3 dims; return it as float64."""
    if isinstance(P, torch.Tensor):
        joint = P.detach().to(device=device, dtype=torch.float64)
    else:
        try:
            joint = torch.as_tensor(np.asarray(P, dtype=np.float64), device=device)
        except (TypeError, ValueError) as error:
            raise ValueError(f"P must be a numeric array, got {type(P).__name__}: {error}") from error
    if joint.ndim < 3:
        raise ValueError(f"P must have at least 3 dims [x1, x2, y], got shape {tuple(joint.shape)}")
    if joint.numel() == 0:
        raise ValueError(f"P is empty (shape {tuple(joint.shape)})")
    if not torch.isfinite(joint).all():
        raise ValueError("P contains NaN or infinite entries")
    if (joint < 0).any():
        raise ValueError(f"P has negative entries (smallest {joint.min().item():.3g})")
    totals = joint.sum((-3, -2, -1))
    worst = (totals - 1).abs().max().item()
    if worst > _SUM_TOLERANCE:
        raise ValueError(f"each distribution in P must sum to 1; the worst is off by {worst:.3g}")
    return joint / totals[..., None, None, None]


def _allowed(joint: torch.Tensor) -> torch.Tensor:
    """Cells (x1, x2, y) that a q with p's (x1,y) and (x2,y) marginals may use."""
    p1, p2 = joint.sum(2), joint.sum(1)
    return (p1[:, :, None, :] > 0) & (p2[:, None, :, :] > 0)


def _active_pairs(joint: torch.Tensor) -> torch.Tensor:
    """Pairs (x1, x2) that carry a dual constraint (at least one allowed y)."""
    return _allowed(joint).any(-1)


def _pair_logits(lam: torch.Tensor, mu: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """theta(x1,x2,y) = lambda(x1,y) + mu(x2,y), -inf where y is not allowed."""
    theta = lam[:, :, None, :] + mu[:, None, :, :]
    return theta.masked_fill(~allowed, float("-inf"))


def _pair_lse(theta: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """logsumexp over y per pair; inactive pairs get a harmless -1."""
    lse = torch.logsumexp(theta.masked_fill(~active[..., None], 0.0), -1)
    return torch.where(active, lse, torch.full_like(lse, -1.0))


def _barrier_value(z, t, linear, allowed, active, shape):
    """F(z) = -t * <linear, z> - sum over active pairs of log(-lse); +inf when infeasible."""
    lam, mu = _split(z, shape)
    lse = _pair_lse(_pair_logits(lam, mu, allowed), active)
    infeasible = ((lse >= 0) & active).any((1, 2))
    barrier = -(torch.log(-lse.clamp(max=-1e-300)) * active).sum((1, 2))
    value = -t * (linear * z).sum(1) + barrier
    return torch.where(infeasible, torch.full_like(value, float("inf")), value)


def _split(z: torch.Tensor, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    m, n, k = shape
    return z[:, : m * k].reshape(-1, m, k), z[:, m * k :].reshape(-1, n, k)


def _gradient_and_hessian(z, t, linear, allowed, active, shape):
    """Gradient and Hessian of the barrier objective, assembled densely per distribution."""
    m, n, k = shape
    lam, mu = _split(z, shape)
    theta = _pair_logits(lam, mu, allowed)
    lse = _pair_lse(theta, active)
    pi = torch.softmax(theta.masked_fill(~active[..., None], 0.0), -1) * allowed
    inv = torch.where(active, -1.0 / lse, torch.zeros_like(lse))
    g_theta = pi * inv[..., None]
    grad = -t * linear + torch.cat([g_theta.sum(2).flatten(1), g_theta.sum(1).flatten(1)], 1)
    outer = pi[..., :, None] * pi[..., None, :]
    h_theta = (torch.diag_embed(pi) - outer) * inv[..., None, None] + outer * (inv**2)[..., None, None]
    eye_m = torch.eye(m, dtype=z.dtype, device=z.device)
    eye_n = torch.eye(n, dtype=z.dtype, device=z.device)
    h_ll = torch.einsum("biac,ij->biajc", h_theta.sum(2), eye_m).reshape(-1, m * k, m * k)
    h_mm = torch.einsum("bjac,jl->bjalc", h_theta.sum(1), eye_n).reshape(-1, n * k, n * k)
    h_lm = h_theta.permute(0, 1, 3, 2, 4).reshape(-1, m * k, n * k)
    hessian = torch.cat([torch.cat([h_ll, h_lm], 2), torch.cat([h_lm.transpose(1, 2), h_mm], 2)], 1)
    return grad, hessian


def _newton_centre(z, t, linear, allowed, active, shape):
    """Minimise the barrier objective for fixed t by damped Newton steps, only on unconverged rows."""
    eye = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
    todo = torch.arange(z.shape[0], device=z.device)
    for _ in range(_MAX_NEWTON_STEPS):
        if todo.numel() == 0:
            break
        rows = (z[todo], linear[todo], allowed[todo], active[todo])
        grad, hessian = _gradient_and_hessian(rows[0], t, *rows[1:], shape)
        scale = hessian.diagonal(dim1=1, dim2=2).abs().amax(1).clamp(min=1.0)
        step = -torch.linalg.solve(hessian + 1e-13 * scale[:, None, None] * eye, grad)
        decrement = -(grad * step).sum(1)
        alpha = _backtrack(step, grad, t, *rows, shape)
        z[todo] = rows[0] + alpha[:, None] * step
        todo = todo[(decrement > _DECREMENT_TOLERANCE) & (alpha > 0)]
    return z


def _backtrack(step, grad, t, z, linear, allowed, active, shape):
    """Per-row step length that keeps feasibility and satisfies Armijo's condition (0 if none)."""
    alpha = torch.ones_like(grad[:, 0])
    current = _barrier_value(z, t, linear, allowed, active, shape)
    slope = (grad * step).sum(1)
    pending = torch.arange(z.shape[0], device=z.device)
    for _ in range(60):
        a = alpha[pending]
        trial = _barrier_value(z[pending] + a[:, None] * step[pending], t, linear[pending],
                               allowed[pending], active[pending], shape)
        accepted = trial <= current[pending] + 0.25 * a * slope[pending]
        pending = pending[~accepted]
        if pending.numel() == 0:
            return alpha
        alpha[pending] *= 0.5
    alpha[pending] = 0.0
    return alpha


def _solve_dual(joint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Follow the barrier's central path until the duality gap is below the target."""
    _, m, n, k = joint.shape
    shape = (m, n, k)
    allowed = _allowed(joint)
    active = allowed.any(-1)
    linear = torch.cat([joint.sum(2).flatten(1), joint.sum(1).flatten(1)], 1)
    start = -(np.log(k) + 1.0)
    z = torch.full((joint.shape[0], (m + n) * k), start, dtype=joint.dtype, device=joint.device)
    n_pairs = max(int(active.sum((1, 2)).max().item()), 1)
    t = 1.0
    while True:
        z = _newton_centre(z, t, linear, allowed, active, shape)
        if n_pairs / t < _GAP_TARGET_NATS:
            break
        t *= _BARRIER_GROWTH
    lam, mu = _split(z, shape)
    return lam, mu, t


def _primal_from_dual(joint, lam, mu, t) -> torch.Tensor:
    """The barrier's primal point q(x1,x2,y) = softmax_y(theta) / (t * -lse); feasible up to the gap."""
    allowed = _allowed(joint)
    active = allowed.any(-1)
    theta = _pair_logits(lam, mu, allowed)
    lse = _pair_lse(theta, active)
    pi = torch.softmax(theta.masked_fill(~active[..., None], 0.0), -1) * allowed
    weight = torch.where(active, 1.0 / (t * -lse), torch.zeros_like(lse))
    return _fit_marginals(pi * weight[..., None], joint.sum(2), joint.sum(1))


def _fit_marginals(q: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, steps: int = 200) -> torch.Tensor:
    """Iterative proportional fitting of q[b, x1, x2, y] to the (x1, y) and (x2, y) marginals."""
    for _ in range(steps):
        q = q * _safe_ratio(p1, q.sum(2))[:, :, None, :]
        q = q * _safe_ratio(p2, q.sum(1))[:, None, :, :]
    return q


def _safe_ratio(target: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """target / current, with 0 where current is 0."""
    return torch.where(current > 0, target / current.clamp(min=1e-300), torch.zeros_like(current))
