"""The Sinkhorn scaling behind BATCH: the plan it returns against an independent numpy scaling, its Newton finish,
stacked kernels, the logit range it refuses, the gradient its tracked steps give, and the bootstrap's weighted
scaling."""

import numpy as np
import pytest
import torch

from pidcore.estimators.batch_terms import balanced_log_targets, conditional_terms
from pidcore.estimators.sinkhorn import MAX_LOGIT_RANGE, sinkhorn_log, sinkhorn_weighted


def _problem(n1=30, n2=40, k=3, scale=2.0, seed=0):
    """Pair logits [n1, n2, k] and balanced log targets from random probes."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n1, n2, k, dtype=torch.float64, generator=generator) * scale
    p1 = torch.distributions.Dirichlet(torch.ones(k, dtype=torch.float64)).sample((n1,))
    p2 = torch.distributions.Dirichlet(torch.ones(k, dtype=torch.float64)).sample((n2,))
    return logits, p1, p2


def _numpy_plan(logits: np.ndarray, rows: np.ndarray, cols: np.ndarray, steps: int = 20_000) -> np.ndarray:
    """Alternating row and column scaling of each label's kernel, in numpy, until the columns are exact."""
    plans = []
    for label in range(logits.shape[-1]):
        plan = np.exp(logits[..., label])
        for _ in range(steps):
            plan *= (rows[:, label] / plan.sum(1))[:, None]
            plan *= (cols[:, label] / plan.sum(0))[None, :]
            if np.abs(plan.sum(1) - rows[:, label]).sum() < 1e-14:
                break
        plans.append(plan)
    return np.stack(plans, -1)


@pytest.mark.parametrize("sinkhorn_steps", [0, 3, 10_000], ids=["newton", "mixed", "sinkhorn-only"])
def test_plan_matches_an_independent_scaling(sinkhorn_steps):
    torch.manual_seed(0)
    logits, p1, p2 = _problem()
    log_rows, log_cols = balanced_log_targets(p1, p2)
    found = sinkhorn_log(logits, log_rows, log_cols, tol=1e-13, max_iter=20_000, sinkhorn_steps=sinkhorn_steps)
    expected = _numpy_plan(logits.numpy(), log_rows.exp().numpy(), log_cols.exp().numpy())
    assert found.converged
    np.testing.assert_allclose(found.plan.numpy(), expected, rtol=1e-8, atol=1e-14)
    rebuilt = (logits + found.f[:, None] + found.g[None]).exp()
    np.testing.assert_allclose(rebuilt.numpy(), found.plan.numpy(), rtol=1e-12)


def test_stacked_kernels_equal_kernels_solved_one_by_one():
    torch.manual_seed(1)
    problems = [_problem(seed=seed, scale=1.0 + seed) for seed in range(3)]
    targets = [balanced_log_targets(p1, p2) for _, p1, p2 in problems]
    stacked = sinkhorn_log(torch.stack([logits for logits, _, _ in problems]),
                           torch.stack([rows for rows, _ in targets]), torch.stack([cols for _, cols in targets]),
                           tol=1e-12)
    for index, ((logits, _, _), (rows, cols)) in enumerate(zip(problems, targets)):
        alone = sinkhorn_log(logits, rows, cols, tol=1e-12)
        np.testing.assert_allclose(stacked.plan[index].numpy(), alone.plan.numpy(), rtol=1e-9, atol=1e-15)


def test_a_logit_range_the_plain_kernel_cannot_hold_is_refused():
    logits, p1, p2 = _problem()
    logits[0, 0, 0] = MAX_LOGIT_RANGE + 10
    with pytest.raises(ValueError, match="pair logits span"):
        sinkhorn_log(logits, *balanced_log_targets(p1, p2))


def test_tracked_steps_give_the_gradient_of_the_conditional_terms():
    torch.manual_seed(2)
    logits, p1, p2 = _problem(n1=12, n2=12, k=2, scale=1.0)
    tracked = logits.clone().requires_grad_()
    terms, _ = conditional_terms(tracked, p1, p2, 1e-13, 10_000)
    terms.sum().backward()
    step, numeric = 1e-6, torch.zeros_like(logits)
    for index in np.ndindex(*logits.shape):
        values = []
        for sign in (1, -1):
            moved = logits.clone()
            moved[index] += sign * step
            values.append(float(conditional_terms(moved, p1, p2, 1e-13, 10_000)[0].sum()))
        numeric[index] = (values[0] - values[1]) / (2 * step)
    relative = float((tracked.grad - numeric).norm() / numeric.norm())
    assert relative < 0.01, f"tracked gradient {relative:.3f} off the finite differences (relative norm)"


def test_each_weighting_leaves_at_its_own_tolerance_as_if_solved_alone():
    generator = torch.Generator().manual_seed(3)
    k, n, resamples = 2, 24, 6
    kernel = (torch.randn(k, n, n, dtype=torch.float64, generator=generator) * 2).exp()
    torch.manual_seed(3)
    rows, cols = (torch.distributions.Dirichlet(torch.ones(k, dtype=torch.float64)).sample((n,)).T for _ in range(2))
    counts = torch.stack([torch.bincount(torch.randint(n, (n,), generator=generator), minlength=n)
                          for _ in range(resamples)]).double().T
    cols = cols[..., None] * ((rows @ counts) / (cols @ counts))[:, None, :]  # each weighting's totals balanced
    together = sinkhorn_weighted(kernel, rows, cols, counts, 1e-6, 10_000, 1.5)
    alone = [sinkhorn_weighted(kernel, rows, cols[..., [r]], counts[:, [r]], 1e-6, 10_000, 1.5)
             for r in range(resamples)]
    assert together.converged and together.iterations == max(one.iterations for one in alone)
    assert len({one.iterations for one in alone}) > 1, "the weightings should need different numbers of steps"
    for r, one in enumerate(alone):
        np.testing.assert_allclose(together.u[..., r], one.u[..., 0], rtol=1e-12)
        np.testing.assert_allclose(together.v[..., r], one.v[..., 0], rtol=1e-12)
