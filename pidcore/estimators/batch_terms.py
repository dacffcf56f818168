"""The per-batch computation of BATCH: Sinkhorn-project the pair kernel and score each x1 anchor."""

from __future__ import annotations

import torch

from pidcore.estimators.sinkhorn import SinkhornResult, sinkhorn_log

_LOG_FLOOR = 1e-30


def balanced_log_targets(p1: torch.Tensor, p2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row targets p(y|x1_a) and column targets p(y|x2_b) rescaled per label to the same total.

    When the probes' batch totals differ, no coupling keeps both marginals; we keep q(x1, y)
    exact and q(x2 | y) exact, which is the limit the published alternating scaling tends to.
    """
    log_rows = torch.log(p1.clamp(min=_LOG_FLOOR))
    log_cols = torch.log(p2.clamp(min=_LOG_FLOOR))
    shift = torch.logsumexp(log_rows, -2) - torch.logsumexp(log_cols, -2)
    return log_rows, log_cols + shift[..., None, :]


def conditional_terms(
    logits: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, tol: float, max_iter: int
) -> tuple[torch.Tensor, SinkhornResult]:
    """Per-anchor I_q(X2; Y | X1 = x1_a) in nats, with q(a, b, y) = p(y|x1_a) q(b|a, y) / n: [..., n1] for pair
    logits [..., n1, n2, k] and probes [..., n, k] (leading dimensions stack independent batches).

    Iq = I(X1;Y) + mean_a of these terms, so the anchor terms give pointwise atoms directly.
    The projection runs in float64 whatever the network's dtype: float32 cannot resolve the
    small column residuals that keep q inside the constraint set.
    """
    logits, p1, p2 = logits.double(), p1.double(), p2.double()
    log_rows, log_cols = balanced_log_targets(p1, p2)
    plan = sinkhorn_log(logits, log_rows, log_cols, tol=tol, max_iter=max_iter)
    log_q_b_given_ay = logits + plan.f[..., :, None, :] + plan.g[..., None, :, :] - log_rows[..., :, None, :]
    log_joint = log_rows[..., :, None, :] + log_q_b_given_ay
    log_q_b_given_a = torch.logsumexp(log_joint, -1, keepdim=True)
    terms = log_joint.exp() * (log_q_b_given_ay - log_q_b_given_a)
    return terms.sum((-2, -1)), plan
