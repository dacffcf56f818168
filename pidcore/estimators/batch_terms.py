"""The per-batch computation of BATCH: Sinkhorn-project the pair kernel and score each x1 anchor."""

from __future__ import annotations

import torch

from pidcore.estimators.sinkhorn import SinkhornResult, WeightedScaling, sinkhorn_log, sinkhorn_weighted

_LOG_FLOOR = 1e-30
# Resamples whose pair masses are formed at once when scoring them: [4, n, n] float64 stays in cache (chunks of 2 to
# 32 took 35, 27, 42, 57 and 73 ms for 100 resamples of 256 samples; the whole stack at once 193 ms).
_PAIR_CHUNK = 4


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
    pair = plan.plan.sum(-1, keepdim=True)
    log_q_b_given_a = torch.log(pair.clamp(min=torch.finfo(pair.dtype).tiny))
    terms = plan.plan * (log_q_b_given_ay - log_q_b_given_a)
    return terms.sum((-2, -1)), plan


def resampled_conditional_sums(logits: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, counts: torch.Tensor,
                               tol: float, max_iter: int, relaxation: float) -> tuple[torch.Tensor, WeightedScaling]:
    """For bootstrap resamples of one scoring batch (counts [R, n]: how often each sample is drawn), the sum over
    each resample's anchors, copies included, of I_q(X2;Y|X1 = x1_a) in nats [R]: every resample projected again
    with its own balanced targets, as conditional_terms would project the gathered resampled batch.

    All resamples share the batch's kernel (sinkhorn_weighted), starting from the batch's own scaling (solved first,
    to tol / 10). An anchor's term is sum_{b,y} P log P - sum_y r log r - sum_b S log S for the plan P = u K v, its
    rows r and pair masses S = sum_y P: the first sum is matrix products, only S log S is computed per pair. The
    kernel exp(logits) is safe outside the log domain: the networks' logits lie within +-sqrt(embed_dim) or the cap.
    """
    logits, weights = logits.double(), counts.double().T
    kernel = logits.permute(2, 0, 1).exp()
    rows, cols = (p.double().clamp(min=_LOG_FLOOR).T for p in (p1, p2))
    whole = torch.ones_like(weights[:, :1])
    own = sinkhorn_weighted(kernel, rows, cols[..., None] * _balance(rows, cols, whole), whole, tol / 10, max_iter,
                            relaxation)
    scaling = sinkhorn_weighted(kernel, rows, cols[..., None] * _balance(rows, cols, weights), weights, tol,
                                max_iter, relaxation, own.v.log().expand(-1, -1, weights.shape[1]))
    u, v = scaling.u, scaling.v
    plan_log_plan = (rows[..., None] * (u.log() - rows.log()[..., None])
                     + u * ((kernel * logits.permute(2, 0, 1)) @ (weights * v))
                     + u * (kernel @ (weights * v * v.log()))).sum(0)
    pair_entropy = torch.cat([_weighted_pair_entropy(kernel, u[..., part], v[..., part], weights[:, part])
                              for part in torch.arange(weights.shape[1]).split(_PAIR_CHUNK)])
    return (weights * (plan_log_plan - pair_entropy.T)).sum(0), scaling


def _balance(rows: torch.Tensor, cols: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per label and weighting [k, 1, R], the factor that brings the columns' total to the rows' (as
    balanced_log_targets does for a gathered batch)."""
    return ((rows @ weights) / (cols @ weights))[:, None, :]


def _weighted_pair_entropy(kernel: torch.Tensor, u: torch.Tensor, v: torch.Tensor, weights: torch.Tensor
                           ) -> torch.Tensor:
    """sum_b w_b S_ab log S_ab per anchor a [R, n] for pair masses S_ab = sum_y u_ya K_yab v_yb of R weightings."""
    masses = u[0].T[:, :, None] * kernel[0] * v[0].T[:, None, :]
    for label in range(1, len(kernel)):
        masses.addcmul_(u[label].T[:, :, None] * kernel[label], v[label].T[:, None, :])
    return torch.bmm(torch.xlogy(masses, masses), weights.T[:, :, None])[..., 0]
