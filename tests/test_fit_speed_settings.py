"""What makes a BATCH fit and its intervals affordable changes no result: the hand-written Adam is torch's, the
fixed-epoch fit skips only the monitor passes nobody reads, the bootstrap's shared-kernel re-projections give the
bounds of the per-resample projections, and importing the estimators loads neither scikit-learn nor torch._dynamo."""

import subprocess
import sys

import torch

from pidcore.atoms import ATOMS
from pidcore.estimators import batch_pid
from pidcore.estimators.alignment import alignment_net
from pidcore.estimators.batch import Adam
from pidcore.estimators.batch_config import PUBLISHED
from pidcore.estimators.batch_terms import conditional_terms, resampled_conditional_sums
from pidcore.estimators.fitted import _atoms_from_means, _resample_picks
from pidcore.estimators.information import to_bits
from pidcore.estimators.intervals import percentile_interval
from tests.gates import planted_splits

BOUND_TOLERANCE_BITS = 1e-3


def _trained(optimiser_for, steps: int = 6) -> dict[str, torch.Tensor]:
    """An alignment net's weights after `steps` updates on a fixed random objective."""
    torch.manual_seed(0)
    net = alignment_net(5, 4, 3, PUBLISHED)
    optimiser = optimiser_for(list(net.parameters()))
    inputs = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x1, x2 = torch.randn(16, 5, generator=inputs), torch.randn(16, 4, generator=inputs)
        loss = (net(x1, x2) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return net.state_dict()


def test_the_hand_written_adam_takes_torchs_steps_exactly():
    ours = _trained(lambda params: Adam(params, 1e-2))
    theirs = _trained(lambda params: torch.optim.Adam(params, lr=1e-2))
    assert all(torch.equal(value, theirs[name]) for name, value in ours.items())


def test_importing_and_fitting_loads_neither_sklearn_nor_the_compiler_stack():
    script = ("import sys\nfrom pidcore.estimators import batch_pid\nfrom tests.gates import planted_splits\n"
              "_, fit, held = planted_splits('AND', 64, 32)\n"
              "batch_pid(*fit, held_out=held, max_epochs=1, bootstrap=0)\n"
              "print('sklearn' in sys.modules, 'torch._dynamo' in sys.modules)")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == ["False", "False"]


def test_fixed_epochs_monitor_only_the_start_and_the_kept_network():
    _, fit, held = planted_splits("AND", 512, 128)
    result = batch_pid(*fit, held_out=held, mode="published", bootstrap=0)
    curve = result.diagnostics["objective_curve"]
    assert [point["monitored_bits"] is not None for point in curve] == [True] + [False] * 7 + [True]
    assert all(point["fit_bits"] is not None for point in curve[1:])
    assert curve[0]["monitored_bits"] == result.diagnostics["initial_bits"]
    assert curve[-1]["monitored_bits"] == result.diagnostics["kept_bits"] < result.diagnostics["initial_bits"]


def test_the_shared_kernel_projection_of_a_whole_batch_matches_the_batch_projection():
    _, _, held = planted_splits("AND", 2, 96)
    logits = torch.randn(96, 96, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    p1, p2 = (torch.as_tensor(array, dtype=torch.float64) for array in held[2:4])
    terms, _ = conditional_terms(logits, p1, p2, 1e-9, 100)
    sums, scaling = resampled_conditional_sums(logits, p1, p2, torch.ones(1, 96), 1e-9, 5000, 1.5)
    assert scaling.converged
    assert abs(float(sums[0] - terms.sum())) < 1e-7


@torch.no_grad()
def _previous_bounds(estimator, data, pointwise, resamples: int, seed: int) -> dict[str, tuple[float, float]]:
    """The bounds as computed before the shared-kernel re-projection: each resampled batch gathered and projected
    on its own (Newton-finished, at the scoring tolerance, from zero)."""
    config = estimator.config
    data64 = data.to("cpu", torch.float64)
    batches = estimator._batches(data64, torch.device("cpu"))
    picks = _resample_picks([len(chunk) for chunk, _ in batches], resamples, torch.Generator().manual_seed(seed))
    informations = torch.stack([pointwise[name].double() for name in ("i1", "i2", "i12")], 1)
    totals = torch.zeros(resamples, 4, dtype=torch.float64)
    for (chunk, logits), pick in zip(batches, picks):
        for resample, drawn in enumerate(pick):
            rows = chunk[drawn]
            terms, _ = conditional_terms(logits[drawn[:, None], drawn[None, :]], data64.p1[rows], data64.p2[rows],
                                         config.sinkhorn_tol * 0.1, config.sinkhorn_max_iter)
            totals[resample] += torch.cat([informations[rows].sum(0), to_bits(terms).sum()[None]])
    resampled = _atoms_from_means(totals / len(data))
    return {name: percentile_interval(resampled[name], config.confidence) for name in ATOMS}


def test_the_bootstrap_bounds_match_the_per_resample_projections_within_a_thousandth_of_a_bit():
    _, fit, held = planted_splits("AND", 1024, 384)
    result = batch_pid(*fit, held_out=held, mode="published", seed=1, bootstrap=100)
    estimator = result.estimator
    data = estimator._calibrated(*held, "evaluation set")
    previous = _previous_bounds(estimator, data, result.pointwise, 100, estimator.config.seed + 4)
    for atom in ATOMS:
        assert all(abs(now - before) < BOUND_TOLERANCE_BITS
                   for now, before in zip(result.atoms.bounds[atom], previous[atom])), (atom, previous)
