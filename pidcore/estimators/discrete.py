"""Exact PID of discrete distributions (Bertschinger et al. 2014, "BROJA").

The union information Iq = min I_q(X1,X2;Y) over q with q(x1,y) = p(x1,y) and q(x2,y) = p(x2,y)
is a convex problem. We solve its Lagrange dual,

    max  sum lambda(x1,y) p(x1,y) + sum mu(x2,y) p(x2,y)
    s.t. logsumexp_y (lambda(x1,y) + mu(x2,y)) <= 0   for every pair (x1, x2),

with a primal-dual interior-point method (pidcore/estimators/discrete_dual.py), batched over a stack of
distributions. Pairs whose optimal q(x1,x2) is zero simply have a slack constraint, so boundary optima (AND, COPY)
need no special care. The dual value is a certified lower bound on Iq. The solver's q, polished by iterative
proportional fitting until both marginals hold to 1e-12, gives an upper bound; the reported gap is the difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pidcore.devices import resolve_device
from pidcore.estimators.batched import BatchedPID
from pidcore.estimators.discrete_dual import solve_dual
from pidcore.estimators.information import entropy_nats, mutual_information_nats, to_bits, xlogy

_SUM_TOLERANCE = 1e-6
_MAX_FITTING_STEPS = 200
_MARGINAL_TOLERANCE = 1e-12


@dataclass
class DiscretePID(BatchedPID):
    """Atoms and mutual informations in bits, with the solver's duality gap and its optimal q, shaped like the input's
    batch dimensions."""

    gap: torch.Tensor
    q: torch.Tensor


def discrete_pid(P, device: str | torch.device = "auto") -> DiscretePID:
    """Exact BROJA PID of P[x1, x2, y], or of a stack P[..., x1, x2, y], in bits."""
    joint = _validated_joint(P, resolve_device(device))
    batch_shape = joint.shape[:-3]
    flat = joint.reshape(-1, *joint.shape[-3:])
    lam, mu, q = solve_dual(flat)
    p1, p2, py = flat.sum(2), flat.sum(1), flat.sum((1, 2))
    dual_value = (lam * p1).sum((1, 2)) + (mu * p2).sum((1, 2))
    q = _fit_marginals(q, p1, p2)
    primal_value = (xlogy(q, q) - xlogy(q, q.sum(-1, keepdim=True))).sum((1, 2, 3))
    iq = to_bits(entropy_nats(py) + dual_value)
    i1 = to_bits(mutual_information_nats(p1))
    i2 = to_bits(mutual_information_nats(p2))
    i12 = to_bits(mutual_information_nats(flat.reshape(flat.shape[0], -1, flat.shape[-1])))
    fields = dict(
        r=i1 + i2 - iq, u1=iq - i2, u2=iq - i1, s=i12 - iq,
        i1=i1, i2=i2, i12=i12, iq=iq, gap=to_bits((primal_value - dual_value).clamp(min=0.0)),
    )
    shaped = {name: value.reshape(batch_shape) for name, value in fields.items()}
    return DiscretePID(q=q.reshape(joint.shape), **shaped)


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


def _fit_marginals(q: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """Iterative proportional fitting of q[b, x1, x2, y] to the (x1, y) and (x2, y) marginals, to 1e-12."""
    for _ in range(_MAX_FITTING_STEPS):
        q = q * _safe_ratio(p1, q.sum(2))[:, :, None, :]
        q = q * _safe_ratio(p2, q.sum(1))[:, None, :, :]
        if (q.sum(2) - p1).abs().max() <= _MARGINAL_TOLERANCE:
            break
    return q


def _safe_ratio(target: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """target / current, with 0 where current is 0."""
    return torch.where(current > 0, target / current.clamp(min=1e-300), torch.zeros_like(current))
