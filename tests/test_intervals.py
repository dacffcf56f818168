"""The 95% intervals on dataset atoms: a bootstrap over the evaluation samples' pointwise atoms, stored with the
atoms, and shown to cover the population value of the fitted estimator on planted data."""

import duckdb
import numpy as np
import pytest
import torch

from pidcore.atoms import ATOMS, BOUND_COLUMNS
from pidcore.estimators import batch_pid
from pidcore.estimators.intervals import percentile_interval
from pidcore.store import ensure_schema
from tests.gates import planted_samples, planted_splits, smoothed_joint

REPETITIONS = 100


def test_the_interval_is_the_central_percentile_range_of_the_resamples():
    values = torch.arange(1001, dtype=torch.float64)
    assert percentile_interval(values, 0.95) == pytest.approx((25.0, 975.0))
    assert all(np.isnan(bound) for bound in percentile_interval(values[:1], 0.95))


def test_batch_pid_returns_bounds_that_hold_the_atom():
    _, fit, held = planted_splits("AND", 256, 128)
    result = batch_pid(*fit, held_out=held, mode="calibrated", seed=2)
    for atom in ATOMS:
        low, high = result.atoms.bounds[atom]
        assert low <= result.atoms[atom] <= high
    assert result.diagnostics["bounds"] == result.atoms.bounds


def test_the_view_has_the_eight_interval_columns(tmp_path):
    ensure_schema(tmp_path / "r.duckdb")
    connection = duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True)
    columns = connection.table("atoms").columns
    connection.close()
    assert [column for column in columns if column in BOUND_COLUMNS] == [
        "r_lo", "r_hi", "u1_lo", "u1_hi", "u2_lo", "u2_hi", "s_lo", "s_hi"]


@pytest.fixture(scope="module")
def coverage():
    """How often, over 100 seeded evaluation sets of 96 samples (one scoring batch each, as in the shipped demo),
    each atom's interval holds the fitted estimator's population value: its atoms on 7,680 fresh samples scored
    in batches of the same size."""
    joint = smoothed_joint("AND")
    result = batch_pid(*planted_samples(joint, 1024, seed=1), held_out=planted_samples(joint, 96, seed=2),
                       mode="calibrated", seed=0, batch_size=96)
    population, _ = result.estimator.evaluate(*planted_samples(joint, 80 * 96, seed=3), resamples=0)
    covered = dict.fromkeys(ATOMS, 0)
    for repetition in range(REPETITIONS):
        atoms, _ = result.estimator.evaluate(*planted_samples(joint, 96, seed=1000 + repetition), seed=repetition)
        for atom in ATOMS:
            low, high = atoms.bounds[atom]
            covered[atom] += low <= population[atom] <= high
    return covered


@pytest.mark.parametrize("atom", ATOMS)
def test_the_interval_covers_the_population_value_in_at_least_90_of_100_repetitions(coverage, atom):
    assert coverage[atom] >= 90, coverage
