"""Exact BROJA PID: canonical gates, identities, agreement with dit's exact cone solver, bad input."""

import numpy as np
import pytest
import torch

from pidcore.estimators import discrete_pid


def gate(outcomes, probabilities=None):
    """A joint P[x1, x2, y] from outcome strings like "011", uniform unless probabilities are given."""
    triples = [tuple(int(c) for c in outcome) for outcome in outcomes]
    shape = tuple(max(t[i] for t in triples) + 1 for i in range(3))
    joint = np.zeros(shape)
    for triple, p in zip(triples, probabilities or [1 / len(triples)] * len(triples)):
        joint[triple] += p
    return joint


CANONICAL = {
    "XOR": (gate(["000", "011", "101", "110"]), (0, 0, 0, 1)),
    "AND": (gate(["000", "010", "100", "111"]), (0.311278, 0, 0, 0.5)),
    "COPY": (gate(["000", "011", "102", "113"]), (0, 1, 1, 0)),
    "RDN": (gate(["000", "111"]), (1, 0, 0, 0)),
    "Y=X1": (gate(["000", "010", "101", "111"]), (0, 1, 0, 0)),
    "SUM": (gate(["000", "011", "101", "112"]), (0.5, 0, 0, 1)),
    "REDUCED_OR": (gate(["000", "011", "101"], [0.5, 0.25, 0.25]), (0.311278, 0, 0, 0.688722)),
}


@pytest.mark.parametrize("name", CANONICAL)
def test_canonical_gates(name):
    joint, expected = CANONICAL[name]
    result = discrete_pid(joint)
    got = [float(result.r), float(result.u1), float(result.u2), float(result.s)]
    np.testing.assert_allclose(got, expected, atol=1e-6)


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


def test_mutual_informations_match_direct_computation():
    joint, _ = CANONICAL["AND"]
    result = discrete_pid(joint)
    assert abs(float(result.i12) - 0.811278) < 1e-6
    assert abs(float(result.i1) - 0.311278) < 1e-6


def test_optimal_q_keeps_both_marginals():
    rng = np.random.default_rng(11)
    joint = rng.dirichlet(np.ones(27)).reshape(3, 3, 3)
    q = discrete_pid(joint).q.numpy()
    np.testing.assert_allclose(q.sum(1), joint.sum(1), atol=1e-9)
    np.testing.assert_allclose(q.sum(0), joint.sum(0), atol=1e-9)


def _dit_atoms(joint):
    """The test-only oracle: dit's exact cone-program BROJA solver."""
    import dit
    from dit.pid import PID_BROJA

    outcomes, probabilities = [], []
    for index in np.ndindex(*joint.shape):
        if joint[index] > 0:
            outcomes.append(tuple(index))
            probabilities.append(joint[index])
    distribution = dit.Distribution(outcomes, probabilities)
    pid = PID_BROJA(distribution, method="cone")
    return [pid.get_pi(((0,), (1,))), pid.get_pi(((0,),)), pid.get_pi(((1,),)), pid.get_pi(((0, 1),))]


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
            worst = max(worst, float(np.abs(np.array(_dit_atoms(joint)) - atoms).max()))
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
