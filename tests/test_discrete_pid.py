"""Exact BROJA PID: canonical gates, identities, agreement with dit's exact cone solver, bad input."""

import numpy as np
import pytest
import torch

from pidcore.estimators import discrete_pid
from tests.gates import GATES, dit_atoms


@pytest.mark.parametrize("name", GATES)
def test_canonical_gates(name):
    got = discrete_pid(GATES[name].joint).atoms()
    np.testing.assert_allclose(list(got.as_dict().values()), list(GATES[name].exact.as_dict().values()), atol=1e-6)


def test_identities_hold_to_1e9_on_a_stack():
    rng = np.random.default_rng(7)
    stack = rng.dirichlet(np.ones(3 * 4 * 2), size=(2, 5)).reshape(2, 5, 3, 4, 2)
    result = discrete_pid(stack)
    assert result.r.shape == (2, 5)
    assert torch.allclose(result.r + result.u1, result.i1, atol=1e-9)
    assert torch.allclose(result.r + result.u2, result.i2, atol=1e-9)
    assert torch.allclose(result.r + result.u1 + result.u2 + result.s, result.i12, atol=1e-9)
    assert float(result.gap.max()) < 1e-9


def test_stack_equals_one_by_one():
    rng = np.random.default_rng(3)
    stack = rng.dirichlet(np.ones(12), size=4).reshape(4, 2, 3, 2)
    together = discrete_pid(stack)
    for i in range(4):
        alone = discrete_pid(stack[i])
        assert abs(float(alone.s) - float(together.s[i])) < 1e-8


def test_padded_stack_of_mixed_shapes_over_several_chunks_equals_one_by_one():
    rng = np.random.default_rng(5)
    stack = np.zeros((300, 3, 4, 3))
    for row in stack:
        m, n, k = rng.integers(1, 4), rng.integers(1, 5), rng.integers(1, 4)
        row[:m, :n, :k] = rng.dirichlet(np.full(m * n * k, 0.5)).reshape(m, n, k)
    stack[::7] = np.roll(stack[::7], 1, axis=1)
    together = discrete_pid(stack)
    for i in (0, 7, 150, 299):
        alone = discrete_pid(stack[i])
        assert abs(float(alone.r) - float(together.r[i])) < 1e-8
        assert abs(float(alone.s) - float(together.s[i])) < 1e-8
    np.testing.assert_allclose(together.q.sum(2).numpy(), stack.sum(2), atol=1e-9)
    np.testing.assert_allclose(together.q.sum(1).numpy(), stack.sum(1), atol=1e-9)
    assert float(together.gap.max()) < 1e-9


def test_mutual_informations_match_direct_computation():
    result = discrete_pid(GATES["AND"].joint)
    assert abs(float(result.i12) - 0.811278) < 1e-6
    assert abs(float(result.i1) - 0.311278) < 1e-6


def test_optimal_q_keeps_both_marginals():
    rng = np.random.default_rng(11)
    joint = rng.dirichlet(np.ones(27)).reshape(3, 3, 3)
    q = discrete_pid(joint).q.numpy()
    np.testing.assert_allclose(q.sum(1), joint.sum(1), atol=1e-9)
    np.testing.assert_allclose(q.sum(0), joint.sum(0), atol=1e-9)


def _random_distributions():
    rng = np.random.default_rng(2026)
    shapes = [(2, 2, 2), (2, 3, 2), (3, 3, 3), (3, 2, 4), (4, 4, 3)]
    batches = []
    for shape in shapes:
        size = int(np.prod(shape))
        dense = rng.dirichlet(np.full(size, 0.5), size=12).reshape(12, *shape)
        sparse = rng.dirichlet(np.full(size, 0.5), size=12) * (rng.random((12, size)) < 0.5)
        sparse[:, 0] += 1e-3 * (sparse.sum(1) == 0)
        sparse = (sparse / sparse.sum(1, keepdims=True)).reshape(12, *shape)
        batches.append(np.concatenate([dense, sparse]))
    return batches


def test_agrees_with_dit_cone_on_120_random_distributions():
    pytest.importorskip("dit")
    worst = 0.0
    count = 0
    for stack in _random_distributions():
        result = discrete_pid(stack)
        ours = torch.stack([result.r, result.u1, result.u2, result.s], 1).numpy()
        for joint, atoms in zip(stack, ours):
            worst = max(worst, float(np.abs(np.array(dit_atoms(joint)) - atoms).max()))
            count += 1
    assert count >= 100
    assert worst < 1e-5, f"worst disagreement with dit's cone solver: {worst:.2e} bits"


def test_zero_cells_and_degenerate_axes():
    joint = np.zeros((3, 2, 2))
    joint[0, 0, 0] = 0.5
    joint[2, 1, 1] = 0.5
    result = discrete_pid(joint)
    assert abs(float(result.r) - 1.0) < 1e-6
    single_label = np.full((2, 2, 1), 0.25)
    assert abs(float(discrete_pid(single_label).i12)) < 1e-12


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((2, 2), 0.25), "at least 3 dims"),
        (np.array([[[0.5, 0.6], [0.0, 0.0]], [[0.0, 0.0], [0.0, -0.1]]]), "negative"),
        (np.full((2, 2, 2), 0.2), "sum to 1"),
        (np.full((2, 2, 2), np.nan), "NaN"),
        ("not numbers", "numeric"),
    ],
)
def test_bad_input_raises_value_error(bad, message):
    with pytest.raises(ValueError, match=message):
        discrete_pid(bad)
