"""Gaussian PID: planted jointly Gaussian data against the closed form, identities, planted vision-only and sum
cases, batching over layers, the log-determinant bias correction, seeded bootstrap bounds, vector targets against
the scalar closed form, an independent optimiser and planted cases, refused input."""

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import torch

from pidcore.atoms import ATOMS
from pidcore.estimators.gaussian import gaussian_pid, gaussian_pid_from_covariance, union_information_bits

MAX_ATOM_ERROR_BITS = 0.02


def random_covariance(rng: np.random.Generator, dim: int, scale: float = 1.0) -> np.ndarray:
    """A random positive-definite covariance: A A^T + I with A standard normal times `scale`."""
    mixing = rng.standard_normal((dim, dim)) * scale
    return mixing @ mixing.T + np.eye(dim)


def closed_form(cov: np.ndarray, d1: int, d2: int) -> dict[str, float]:
    """Population atoms and informations in bits for a scalar target, from numpy log-determinants of blocks."""
    target = list(range(d1 + d2, cov.shape[0]))

    def information(source: list[int]) -> float:
        logdet = lambda index: np.linalg.slogdet(cov[np.ix_(index, index)])[1]  # noqa: E731
        return 0.5 * (logdet(source) + logdet(target) - logdet(source + target)) / math.log(2)

    i1, i2 = information(list(range(d1))), information(list(range(d1, d1 + d2)))
    i12 = information(list(range(d1 + d2)))
    r = min(i1, i2)
    return {"r": r, "u1": i1 - r, "u2": i2 - r, "s": i12 - i1 - i2 + r, "i1": i1, "i2": i2, "i12": i12}


def draw(rng: np.random.Generator, cov: np.ndarray, n: int, d1: int, d2: int):
    """n samples of N(0, cov) split into x1 [n, d1], x2 [n, d2] and the target: y [n] if scalar, else [n, dy]."""
    z = rng.multivariate_normal(np.zeros(len(cov)), cov, size=n)
    return z[:, :d1], z[:, d1:d1 + d2], z[:, -1] if len(cov) == d1 + d2 + 1 else z[:, d1 + d2:]


def atom_errors(got, expected: dict[str, float]) -> np.ndarray:
    return np.array([abs(got[name] - expected[name]) for name in ATOMS])


def test_planted_gaussian_data_match_the_closed_form_within_002_bits_over_20_seeds():
    worst = 0.0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        cov = random_covariance(rng, 3 + 2 + 1)
        worst = max(worst, atom_errors(gaussian_pid(*draw(rng, cov, 20_000, 3, 2)), closed_form(cov, 3, 2)).max())
    assert worst < MAX_ATOM_ERROR_BITS


def test_population_atoms_equal_the_closed_form_and_satisfy_the_identities():
    rng = np.random.default_rng(11)
    for _ in range(20):
        cov = random_covariance(rng, 4 + 3 + 1)
        result = gaussian_pid_from_covariance(torch.as_tensor(cov), 4, 3)
        expected = closed_form(cov, 4, 3)
        for name in ATOMS + ("i1", "i2", "i12"):
            assert abs(float(getattr(result, name)) - expected[name]) < 1e-9
        assert abs(float(result.r + result.u1 - result.i1)) < 1e-6
        assert abs(float(result.r + result.u2 - result.i2)) < 1e-6
        assert abs(float(result.r + result.u1 + result.u2 + result.s - result.i12)) < 1e-6


def vision_only_covariance() -> np.ndarray:
    """X1 [2] and X2 [2] independent standard normals, Y = X1[0] + 0.5 X1[1] + N(0, 1): Y depends on X1 only."""
    weights = np.array([1.0, 0.5, 0.0, 0.0])
    cov = np.eye(5)
    cov[:4, 4] = cov[4, :4] = weights
    cov[4, 4] = weights @ weights + 1.0
    return cov


def test_a_vision_only_target_reads_as_unique_to_x1():
    cov = vision_only_covariance()
    exact = gaussian_pid_from_covariance(cov, 2, 2).atoms()
    assert exact.u1 == pytest.approx(0.5 * math.log2(2.25), abs=1e-12)
    assert (exact.r, exact.u2, exact.s) == pytest.approx((0, 0, 0), abs=1e-12)
    estimate = gaussian_pid(*draw(np.random.default_rng(0), cov, 20_000, 2, 2))
    assert estimate.u1 == pytest.approx(exact.u1, abs=MAX_ATOM_ERROR_BITS)
    assert max(abs(estimate.r), abs(estimate.u2), abs(estimate.s)) < 0.01


def test_a_noisy_sum_of_independent_sources_is_redundant_and_synergistic():
    # X1, X2 independent N(0, 1), Y = X1 + X2 + N(0, 1). The Gaussian PID's redundancy is min(I(X1;Y), I(X2;Y)),
    # not 0, even though the sources are independent: R = 1/2 log2(3/2), U1 = U2 = 0, S = 1/2 log2 3 - R = 1/2 bit.
    cov = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 3.0]])
    exact = gaussian_pid_from_covariance(cov, 1, 1).atoms()
    r = 0.5 * math.log2(1.5)
    assert (exact.r, exact.u1, exact.u2, exact.s) == pytest.approx((r, 0, 0, 0.5 * math.log2(3) - r), abs=1e-12)
    assert exact.s == pytest.approx(0.5, abs=1e-12)
    estimate = gaussian_pid(*draw(np.random.default_rng(1), cov, 20_000, 1, 1))
    assert atom_errors(estimate, exact.as_dict()).max() < MAX_ATOM_ERROR_BITS


def test_a_stack_of_layers_equals_one_at_a_time():
    rng = np.random.default_rng(5)
    stack = torch.as_tensor(np.stack([random_covariance(rng, 6) for _ in range(6)]).reshape(2, 3, 6, 6))
    together = gaussian_pid_from_covariance(stack, 2, 3)
    assert together.stacked().shape == (2, 3, 4)
    for layer, cov in enumerate(stack.reshape(6, 6, 6)):
        alone = gaussian_pid_from_covariance(cov, 2, 3).stacked()
        assert torch.allclose(alone, together.stacked().reshape(6, 4)[layer], atol=1e-12, rtol=0)


def test_numpy_and_torch_samples_give_the_same_atoms():
    x1, x2, y = draw(np.random.default_rng(2), random_covariance(np.random.default_rng(3), 5), 1000, 2, 2)
    from_numpy = gaussian_pid(x1, x2, y, device="cpu")
    from_torch = gaussian_pid(*(torch.as_tensor(part, dtype=torch.float32) for part in (x1, x2, y[:, None])))
    assert atom_errors(from_torch, from_numpy.as_dict()).max() < 1e-4


def high_dimensional_weak_covariance(d1: int, d2: int) -> np.ndarray:
    """Many source dimensions and a weak scalar target: the regime where plug-in log-determinants are biased."""
    return random_covariance(np.random.default_rng(1), d1 + d2 + 1, scale=0.1)


def test_bias_correction_cuts_the_error_of_the_total_information_to_a_third():
    d1, d2 = 24, 16
    cov = high_dimensional_weak_covariance(d1, d2)
    exact = closed_form(cov, d1, d2)
    plain, corrected = [], []
    for seed in range(50):
        samples = draw(np.random.default_rng(100 + seed), cov, 500, d1, d2)
        plain.append(abs(gaussian_pid(*samples).i12 - exact["i12"]))
        corrected.append(abs(gaussian_pid(*samples, bias_correction=True).i12 - exact["i12"]))
    assert np.mean(corrected) <= np.mean(plain) / 3


def test_bootstrap_bounds_bracket_the_estimate_and_repeat_with_the_seed():
    samples = draw(np.random.default_rng(4), random_covariance(np.random.default_rng(6), 6), 2000, 3, 2)
    first = gaussian_pid(*samples, n_bootstrap=200, seed=3)
    again = gaussian_pid(*samples, n_bootstrap=200, seed=3)
    other = gaussian_pid(*samples, n_bootstrap=200, seed=4)
    assert first.bounds == again.bounds and first.bounds != other.bounds
    assert first.as_dict() == gaussian_pid(*samples).as_dict()
    for name in ATOMS:
        low, high = first.bounds[name]
        assert low <= first[name] <= high


def test_the_numerical_union_information_equals_the_scalar_closed_form():
    rng = np.random.default_rng(21)
    stack = torch.as_tensor(np.stack([random_covariance(rng, 3 + 2 + 1) for _ in range(20)]))
    closed = gaussian_pid_from_covariance(stack, 3, 2).iq
    assert float((union_information_bits(stack, 3, 2) - closed).abs().max()) < 1e-9


def independent_union_bits(cov: np.ndarray, d1: int, d2: int, rng: np.random.Generator) -> float:
    """Iq in bits by scipy's BFGS (numerical gradients) over couplings C = A (I + A^T A)^(-1/2): I(X1,X2;Y) of the
    joint covariances that keep both source-target blocks, their X1-X2 block Sxy + R1 C R2 (Ri the noise roots)."""
    sources, target = [slice(0, d1), slice(d1, d1 + d2)], slice(d1 + d2, len(cov))
    given_y = [cov[s, target] @ np.linalg.inv(cov[target, target]) @ cov[target, s] for s in sources]
    r1, r2 = (scipy.linalg.sqrtm(cov[s, s] - g).real for s, g in zip(sources, given_y))
    through_y = cov[:d1, target] @ np.linalg.solve(cov[target, target], cov[target, d1:d1 + d2])

    def union(flat: np.ndarray) -> float:
        a = flat.reshape(d1, d2)
        coupling = a @ np.linalg.inv(scipy.linalg.sqrtm(np.eye(d2) + a.T @ a).real)
        joint = cov.copy()
        joint[:d1, d1:d1 + d2] = through_y + r1 @ coupling @ r2
        joint[d1:d1 + d2, :d1] = joint[:d1, d1:d1 + d2].T
        return closed_form(joint, d1, d2)["i12"]

    starts = [rng.standard_normal(d1 * d2) * 0.5 for _ in range(2)]
    return min(scipy.optimize.minimize(union, start, method="BFGS", options={"gtol": 1e-10}).fun for start in starts)


def test_vector_targets_match_an_independent_optimiser_and_keep_the_bounds():
    rng = np.random.default_rng(31)
    covs = [random_covariance(rng, 3 + 2 + 2) for _ in range(20)]
    result = gaussian_pid_from_covariance(torch.as_tensor(np.stack(covs)), 3, 2)
    assert float(result.stacked().min()) > -1e-9  # max(I1, I2) <= Iq <= min(I1 + I2, I12)
    assert float((result.iq - torch.maximum(result.i1, result.i2))[:4].max()) > 0.1  # not the scalar closed form
    for index, cov in enumerate(covs[:4]):
        assert abs(float(result.iq[index]) - independent_union_bits(cov, 3, 2, rng)) < 1e-8
        expected = closed_form(cov, 3, 2)
        for name in ("i1", "i2", "i12"):
            assert abs(float(getattr(result, name)[index]) - expected[name]) < 1e-9


def test_a_target_with_one_part_per_source_has_no_redundancy_or_synergy():
    # Y = (Y1, Y2) independent; X1 [2] sees Y1 only, X2 [2] sees Y2 only: U1 = I(X1;Y), U2 = I(X2;Y), R = S = 0.
    cov = np.eye(6)
    for source, target, gain in ((0, 4, 0.8), (1, 4, 0.3), (2, 5, 0.6)):
        cov[source, target] = cov[target, source] = gain
    result = gaussian_pid_from_covariance(cov, 2, 2)
    assert (float(result.r), float(result.s)) == pytest.approx((0, 0), abs=1e-9)
    assert float(result.u1) == pytest.approx(float(result.i1), abs=1e-9) and float(result.u1) > 0.5


def test_a_source_that_is_a_noisier_copy_of_the_other_adds_nothing_unique():
    # X1 = Y + N1 (vector target), X2 = X1 + N2: X2 is degraded from X1, so U2 = 0 and S = 0, R = I(X2;Y).
    rng = np.random.default_rng(8)
    gain = rng.standard_normal((3, 2))
    x1 = gain @ gain.T + np.eye(3)
    cov = np.block([[x1, x1, gain], [x1, x1 + 0.5 * np.eye(3), gain], [gain.T, gain.T, np.eye(2)]])
    atoms = gaussian_pid_from_covariance(cov, 3, 3).atoms()
    assert (atoms.u2, atoms.s) == pytest.approx((0, 0), abs=1e-7)
    assert atoms.r == pytest.approx(closed_form(cov, 3, 3)["i2"], abs=1e-7) and atoms.u1 > 0.1


def test_planted_vector_targets_match_the_population_within_002_bits():
    worst = 0.0
    for seed in range(10):
        rng = np.random.default_rng(40 + seed)
        cov = random_covariance(rng, 3 + 2 + 2)
        exact = gaussian_pid_from_covariance(cov, 3, 2).atoms()
        worst = max(worst, atom_errors(gaussian_pid(*draw(rng, cov, 20_000, 3, 2)), exact.as_dict()).max())
    assert worst < MAX_ATOM_ERROR_BITS


def test_vector_target_bootstrap_and_the_refused_bias_correction():
    samples = draw(np.random.default_rng(9), random_covariance(np.random.default_rng(10), 7), 2000, 3, 2)
    atoms = gaussian_pid(*samples, n_bootstrap=50, seed=0)
    assert all(atoms.bounds[name][0] <= atoms[name] <= atoms.bounds[name][1] for name in ATOMS)
    with pytest.raises(NotImplementedError, match="vector target"):
        gaussian_pid(*samples, bias_correction=True)


@pytest.mark.parametrize("cov, d1, d2, message", [
    (np.eye(3)[:2], 1, 1, r"\[..., D, D\]"),
    (np.eye(3), 1, 2, "a target after them"),
    (np.full((3, 3), np.nan), 1, 1, "NaN"),
    (np.triu(np.ones((3, 3))), 1, 1, "symmetric"),
    (np.ones((3, 3)), 1, 1, "positive definite"),
])
def test_bad_covariances_are_refused_in_one_line(cov, d1, d2, message):
    with pytest.raises(ValueError, match=message):
        gaussian_pid_from_covariance(cov, d1, d2)


def test_mismatched_samples_are_refused():
    with pytest.raises(ValueError, match="need x1"):
        gaussian_pid(np.zeros((10, 2)), np.zeros((9, 2)), np.zeros(10))
