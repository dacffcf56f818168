"""BATCH estimator: planted gates against the exact PID, pointwise atoms, held-out edge cases, persistence."""

import warnings

import numpy as np
import pytest
import torch

from pidcore.atoms import ATOMS, INFORMATIONS
from pidcore.estimators import BatchPIDEstimator, batch_pid, cluster_pid, discrete_pid
from pidcore.estimators.sinkhorn import sinkhorn_log
from tests.gates import PLANTED, planted_samples, planted_splits, smoothed_joint


@pytest.mark.parametrize("mode", ["published", "calibrated"])
@pytest.mark.parametrize("gate", PLANTED)
def test_planted_gates_match_exact_pid_within_003_bits(gate, mode):
    joint, fit, held = planted_splits(gate)
    exact = discrete_pid(joint).atoms()
    result = batch_pid(*fit, held_out=held, mode=mode, device="cpu", bootstrap=0)
    errors = {atom: abs(result.atoms[atom] - exact[atom]) for atom in ATOMS}
    assert max(errors.values()) < 0.03, (gate, mode, result.atoms, exact)
    assert result.diagnostics["sinkhorn_converged"]


@pytest.mark.parametrize("mode", ["published", "calibrated"])
def test_training_never_reads_the_evaluation_split(mode):
    _, fit, held = planted_splits("AND", 512, 128)
    _, _, other = planted_splits("XOR", 2, 128)
    first = batch_pid(*fit, held_out=held, mode=mode, seed=3, bootstrap=0)
    second = batch_pid(*fit, held_out=other, mode=mode, seed=3, bootstrap=0)
    assert first.diagnostics["objective_curve"] == second.diagnostics["objective_curve"]
    assert first.diagnostics["best_epoch"] == second.diagnostics["best_epoch"]
    weights = second.estimator.net.state_dict()
    assert all(torch.equal(value, weights[name]) for name, value in first.estimator.net.state_dict().items())
    assert first.atoms.s != second.atoms.s


def test_the_presets_choose_how_training_stops_and_where_p_y_comes_from():
    _, fit, held = planted_splits("AND", 512, 128)
    published = batch_pid(*fit, held_out=held, mode="published", bootstrap=0)
    calibrated = batch_pid(*fit, held_out=held, mode="calibrated", bootstrap=0)
    assert published.diagnostics["selection"] == "fixed epochs" and published.diagnostics["epochs"] == 8
    assert calibrated.diagnostics["selection"] == "early stopping on a validation part of the fitting split"
    assert torch.allclose(published.estimator.calibration.p_y, torch.as_tensor(fit[4]).mean(0))
    assert torch.allclose(calibrated.estimator.calibration.p_y, torch.as_tensor(held[4]).mean(0))
    assert published.diagnostics["p_y_from"] == "fit" and calibrated.diagnostics["p_y_from"] == "evaluation"


@pytest.fixture(scope="module")
def and_result():
    _, fit, held = planted_splits("AND", 768, 512)
    return batch_pid(*fit, held_out=held, seed=5, bootstrap=20)


def test_pointwise_atoms_average_to_dataset_atoms(and_result):
    for name in ATOMS + INFORMATIONS:
        assert abs(float(and_result.pointwise[name].mean()) - and_result.atoms[name]) < 1e-12
        assert len(and_result.pointwise[name]) == 512
    pointwise = and_result.pointwise
    assert torch.allclose(pointwise["r"] + pointwise["u1"], pointwise["i1"])
    assert torch.allclose(pointwise["r"] + pointwise["u1"] + pointwise["u2"] + pointwise["s"], pointwise["i12"])


def test_diagnostics_are_reported(and_result):
    diagnostics = and_result.diagnostics
    for key in ("marginal_gap_x1", "marginal_gap_x2", "sinkhorn_residual", "epochs", "objective_curve",
                "negative_atoms", "negative_pointwise_fraction", "mode"):
        assert key in diagnostics
    assert diagnostics["sinkhorn_residual"] < 1e-5
    assert diagnostics["epochs"] == len(diagnostics["objective_curve"]) - 1


def test_negative_atoms_are_returned_not_clipped(and_result):
    assert any(float(and_result.pointwise[atom].min()) < 0 for atom in ATOMS)
    fractions = and_result.diagnostics["negative_pointwise_fraction"]
    assert any(value > 0 for value in fractions.values())


def test_held_out_set_of_ten_gives_a_result():
    _, fit, held = planted_splits("XOR", 256, 10)
    result = batch_pid(*fit, held_out=held, max_epochs=2)
    assert len(result.pointwise["s"]) == 10
    assert all(np.isfinite(value) for value in result.atoms.as_dict().values())


def test_default_split_when_only_one_set_is_given():
    _, data, _ = planted_splits("RDN", 300, 2)
    result = batch_pid(*data, max_epochs=2)
    assert result.diagnostics["n_fit"] + result.diagnostics["n_held_out"] == 300
    assert len(result.held_out_index) == result.diagnostics["n_held_out"]


def test_seeded_runs_are_identical():
    _, fit, held = planted_splits("AND", 256, 128)
    first = batch_pid(*fit, held_out=held, max_epochs=3, seed=3)
    second = batch_pid(*fit, held_out=held, max_epochs=3, seed=3)
    assert first.atoms == second.atoms


def test_calibrated_mode_closes_the_marginal_gap():
    _, fit, held = planted_splits("AND", 256, 256)
    skewed = [np.array(a, copy=True) for a in held]
    skewed[2] = 0.8 * skewed[2] + 0.2 * np.array([0.0, 1.0])
    result = batch_pid(*fit, held_out=tuple(skewed), mode="calibrated", max_epochs=2)
    assert result.diagnostics["marginal_gap_x1"] > 0.05
    assert result.diagnostics["marginal_gap_after_calibration"] < 1e-9


def test_saved_estimator_scores_new_samples_identically(tmp_path, and_result):
    path = tmp_path / "estimator.safetensors"
    and_result.estimator.save(path)
    loaded = BatchPIDEstimator.load(path)
    joint = smoothed_joint("AND", 1e-3)
    new = planted_samples(joint, 3, seed=9)
    before = and_result.estimator.pointwise(*new)
    after = loaded.pointwise(*new)
    for atom in ATOMS:
        assert torch.allclose(before[atom], after[atom], atol=1e-12)
        assert before[atom].shape == (3,)
    assert b"pickle" not in path.read_bytes()[:64]


def test_single_new_sample_lands_near_its_planted_value(and_result):
    joint = smoothed_joint("AND", 1e-3)
    x1, x2, p1, p2, p12 = planted_samples(joint, 64, seed=21)
    both_on = np.flatnonzero(p12[:, 1] > 0.5)[:1]
    atoms = and_result.estimator.pointwise(x1[both_on], x2[both_on], p1[both_on], p2[both_on], p12[both_on])
    assert float(atoms["s"][0]) > 1.0, "the AND=1 sample is surprising given either input alone"


def test_unequal_batch_totals_are_balanced_not_capped():
    rows = torch.log(torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], dtype=torch.float64))
    cols = torch.log(torch.tensor([[0.3, 0.7], [0.6, 0.4], [0.9, 0.1]], dtype=torch.float64))
    from pidcore.estimators.batch_terms import balanced_log_targets

    log_rows, log_cols = balanced_log_targets(rows.exp(), cols.exp())
    logits = torch.randn(3, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 4
    plan = sinkhorn_log(logits, log_rows, log_cols, tol=1e-12)
    q = (logits + plan.f[:, None] + plan.g[None]).exp()
    assert plan.converged
    assert torch.allclose(q.sum(1), log_rows.exp(), atol=1e-12)
    assert torch.allclose(q.sum(0), log_cols.exp(), atol=1e-10)


def test_sinkhorn_reports_an_iteration_cap_instead_of_hiding_it():
    logits = torch.randn(50, 50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 30
    rows = torch.full((50, 2), np.log(0.5 / 50), dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = sinkhorn_log(logits, rows, rows.clone(), tol=1e-15, max_iter=1, sinkhorn_steps=1)
    assert not plan.converged and plan.residual > 1e-15
    assert any("Sinkhorn stopped" in str(w.message) for w in caught)


def _valid_inputs(n=40, k=2):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(k), size=n)
    return [rng.standard_normal((n, 3)), rng.standard_normal((n, 4)), probs, probs, probs]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: a.__setitem__(2, a[2] * 1.5), "sum to 1"),
        (lambda a: a.__setitem__(1, a[1][:-1]), "same number of samples"),
        (lambda a: [a.__setitem__(i, np.ones((40, 1))) for i in (2, 3, 4)], "at least 2"),
        (lambda a: a[0].__setitem__((3, 1), np.nan), "NaN"),
        (lambda a: a.__setitem__(0, a[0][:, 0]), "2-D"),
        (lambda a: a.__setitem__(3, -a[3]), "negative"),
    ],
)
def test_bad_inputs_raise_value_error(mutate, message):
    inputs = _valid_inputs()
    mutate(inputs)
    with pytest.raises(ValueError, match=message):
        batch_pid(*inputs, max_epochs=1)


def test_bad_settings_raise_value_error():
    with pytest.raises(ValueError, match="mode"):
        batch_pid(*_valid_inputs(), mode="fast")
    with pytest.raises(ValueError, match="unknown"):
        batch_pid(*_valid_inputs(), epochs=3)


def test_cluster_cross_check_recovers_redundancy():
    joint, _, held = planted_splits("RDN", 2, 1024)
    result = cluster_pid(held[0], held[1], held[4], clusters=4)
    exact = discrete_pid(joint)
    assert abs(float(result.r) - float(exact.r)) < 0.02
    assert abs(float(result.s)) < 0.02


def test_a_non_finite_objective_keeps_the_last_good_weights_and_says_so(monkeypatch):
    import pidcore.estimators.batch as batch_module

    real_epoch, calls = batch_module._epoch, []

    def epoch_that_diverges_second(*args):
        calls.append(1)
        return real_epoch(*args) if len(calls) == 1 else float("nan")

    monkeypatch.setattr(batch_module, "_epoch", epoch_that_diverges_second)
    _, fit, held = planted_splits("AND", 256, 128)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = batch_pid(*fit, held_out=held, max_epochs=5)
    assert result.diagnostics["stopped_because"] == "non-finite objective"
    assert result.diagnostics["epochs"] == 2
    assert any("non-finite" in str(w.message) for w in caught)
    assert all(np.isfinite(value) for value in result.atoms.as_dict().values())
