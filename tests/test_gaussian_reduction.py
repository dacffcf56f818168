"""Reduction before the Gaussian PID: fitted on the fitting rows only, the stated dimensions and caps, rank-deficient
sources, marginal Gaussianisation, batching over layers, refused input, and planted non-Gaussian data against the
exact Gaussian PID of its underlying Gaussian (and a sign copula that Gaussianisation cannot fix)."""

import json
import math

import pytest
import torch

from pidcore.estimators.gaussian import gaussian_pid_from_covariance, sample_covariance
from pidcore.estimators.reduction import components_cap, fit_gaussianiser, prepare

SCALAR_COVARIANCE = torch.tensor([[1.0, 0.3, 0.6], [0.3, 1.0, 0.5], [0.6, 0.5, 1.0]], dtype=torch.float64)


def layered_world(seed: int, layers: int = 3, n: int = 400, d: int = 8, dy: int = 1):
    """x1, x2 [layers, n, d] sharing a latent with y [n, dy], and a mask fitting on the first half of the rows."""
    generator = torch.Generator().manual_seed(seed)
    latent = torch.randn(n, dy, generator=generator, dtype=torch.float64)
    sources = [latent @ torch.randn(layers, dy, d, generator=generator, dtype=torch.float64)
               + torch.randn(layers, n, d, generator=generator, dtype=torch.float64) for _ in range(2)]
    target = latent + 0.5 * torch.randn(n, dy, generator=generator, dtype=torch.float64)
    return sources[0], sources[1], target, torch.arange(n) < n // 2


def atoms(prepared) -> torch.Tensor:
    """The Gaussian PID atoms [L, 4] of prepared joint samples."""
    covariance = sample_covariance(prepared.samples)
    return gaussian_pid_from_covariance(covariance, prepared.d1, prepared.d2).stacked()


@pytest.mark.parametrize("gaussianise", [False, True])
def test_fitted_on_the_fitting_rows_only(gaussianise):
    x1, x2, y, fit = layered_world(0)
    before = prepare(x1, x2, y, fit, components=4, gaussianise=gaussianise)
    changed = [tensor.clone() for tensor in (x1, x2, y)]
    for tensor in changed:
        tensor[..., 200:260, :] = 100 * tensor[..., 200:260, :] + 7
    after = prepare(*changed, fit, components=4, gaussianise=gaussianise)
    assert after.record == before.record
    assert torch.equal(after.samples[:, 60:], before.samples[:, 60:])
    assert not torch.equal(after.samples[:, :60], before.samples[:, :60])


def test_stated_dimensions_and_caps():
    x1, x2, y, fit = layered_world(1, layers=2, n=4000, d=64)
    prepared = prepare(x1, x2, y, fit)
    assert (prepared.d1, prepared.d2, prepared.samples.shape) == (32, 32, (2, 2000, 65))
    assert json.loads(json.dumps(prepared.record)) == prepared.record
    assert prepared.record["components"] == {"x1": 32, "x2": 32} and prepared.record["rank"]["x1"] == [64, 64]
    assert all(0 < kept < 1 for kept in prepared.record["variance_kept"]["x1"])
    few_fit = torch.arange(4000) < 20
    assert prepare(x1, x2, y, few_fit).d1 == 19  # n_fit - 1
    assert prepare(x1[..., :5], x2, y, fit).d1 == 5  # the source's own dimension
    x1, x2, y, fit = layered_world(2, n=1200, dy=3)
    assert components_cap(600, 3) == 6 == prepare(x1, x2, y, fit).d1  # floor(ln 2 * 0.05 * 600 / 3)
    scarce = prepare(x1, x2, y, torch.arange(1200) < 1180)  # 20 evaluation rows: one component, the bias stated
    assert scarce.d1 == 1 and scarce.record["bias_bound_bits"] == pytest.approx(2 * 3 / (2 * 20 * math.log(2)))


def test_rank_deficient_source_keeps_the_estimator_defined():
    x1, x2, y, fit = layered_world(3)
    deficient = torch.cat([x1[..., :3], x1[..., :3], torch.full_like(x1[..., :2], 5.0)], dim=-1)
    deficient[1, :, 1] = deficient[1, :, 4] = 2 * deficient[1, :, 0]  # layer 1 has only two directions
    prepared = prepare(deficient, x2, y, fit, components=8)
    assert prepared.record["rank"]["x1"] == [3, 2, 3] and prepared.d1 == 2
    assert torch.isfinite(atoms(prepared)).all()
    assert all(abs(kept - 1) < 1e-9 for kept in prepare(deficient[[0]], x2[[0]], y, fit).record["variance_kept"]["x1"])
    with pytest.raises(ValueError, match=r"constant on the fitting rows in layer\(s\) \[2\]"):
        prepare(torch.cat([x1[:2], torch.full_like(x1[2:], 3.0)]), x2, y, fit)


def test_gaussianisation_is_monotone_and_standard_normal_on_the_fitting_rows():
    generator = torch.Generator().manual_seed(4)
    rows = torch.randn(2, 2000, 3, generator=generator, dtype=torch.float64).exp()
    gaussianiser = fit_gaussianiser(rows)
    mapped = gaussianiser.apply(rows)
    quantiles = torch.special.ndtri((torch.arange(2000, dtype=torch.float64) + 0.5) / 2000)
    assert torch.allclose(mapped.sort(-2).values, quantiles[None, :, None].expand(2, -1, 3), atol=1e-9)
    assert mapped.mean(-2).abs().max() < 1e-12 and (mapped.std(-2) - 1).abs().max() < 0.01
    grid = torch.linspace(-1.0, 60.0, 5001, dtype=torch.float64)[None, :, None].expand(2, -1, 3)
    through = gaussianiser.apply(grid)
    assert (through.diff(dim=-2) >= 0).all() and torch.isfinite(through).all()
    ties = fit_gaussianiser(torch.tensor([[0.0], [1.0], [1.0], [2.0]], dtype=torch.float64))
    mid_ranks = torch.tensor([0.5 / 4, 2 / 4, 1.25 / 4, 0.5 / 4, 3.5 / 4], dtype=torch.float64)  # 1.0 is tied
    queries = torch.tensor([[0.0], [1.0], [0.5], [-3.0], [9.0]], dtype=torch.float64)
    assert torch.allclose(ties.apply(queries).flatten(), torch.special.ndtri(mid_ranks))


@pytest.mark.parametrize("gaussianise", [False, True])
def test_batched_over_layers_equals_one_layer_at_a_time(gaussianise):
    x1, x2, y, fit = layered_world(5)
    batched = prepare(x1, x2, y, fit, components=5, gaussianise=gaussianise)
    for layer in range(3):
        single = prepare(x1[[layer]], x2[[layer]], y, fit, components=5, gaussianise=gaussianise)
        assert torch.allclose(single.samples[0], batched.samples[layer], atol=1e-10)
        assert single.record["variance_kept"]["x2"][0] == pytest.approx(batched.record["variance_kept"]["x2"][layer])
    assert batched.samples.dtype == torch.float64


def bad_inputs():
    """(arguments, message) pairs that prepare must refuse."""
    x1, x2, y, fit = layered_world(6)
    nan = x1.clone()
    nan[1, 5, 2] = float("nan")
    return [((x1, x2[:, :-1], y, fit), "same L and n"), ((x1, x2[:2], y, fit), "same L and n"),
            ((x1[0], x2[0], y, fit), "same L and n"), ((x1, x2, y[:-1], fit), "same L and n"),
            ((x1, x2, y, fit.long()), "boolean mask"), ((x1, x2, y, torch.arange(400) < 9), "at least 10 fitting"),
            ((nan, x2, y, fit), "x1 is empty or contains NaN"), ((x1, x2, y * float("inf"), fit), "y is empty"),
            ((x1, x2, torch.cat([y, 2 * y], 1), fit), "target's fitting covariance is singular")]


@pytest.mark.parametrize("index", range(9))
def test_bad_inputs_refused_in_one_line(index):
    arguments, message = bad_inputs()[index]
    with pytest.raises(ValueError, match=message) as error:
        prepare(*arguments)
    assert "\n" not in str(error.value)


def test_components_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="positive integer"):
        prepare(*layered_world(6), components=0)


def test_planted_monotone_warps_fixed_by_gaussianisation():
    """Scalar X1, X2, Y of a known Gaussian pushed through exp, cube, exp: the underlying Gaussian's PID is exact."""
    reference = gaussian_pid_from_covariance(SCALAR_COVARIANCE, 1, 1).stacked()
    root, fit = torch.linalg.cholesky(SCALAR_COVARIANCE), torch.arange(4000) < 2000
    errors = {False: [], True: []}
    for seed in range(3):
        latent = torch.randn(4000, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) @ root.T
        warped = (latent[None, :, :1].exp(), latent[None, :, 1:2] ** 3, latent[:, 2].exp())
        for gaussianise in errors:
            estimate = atoms(prepare(*warped, fit, components=1, gaussianise=gaussianise))[0]
            errors[gaussianise].append(float((estimate - reference).abs().max()))
    assert max(errors[True]) < 0.05 and min(errors[False]) > 0.08 and max(errors[True]) < min(errors[False]) / 3


def test_sign_copula_is_beyond_marginal_gaussianisation():
    """Y = sign(X1 X2) |W| holds 1 bit of pure synergy; every correlation is 0, so the Gaussian PID sees none."""
    latent = torch.randn(4000, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    target = torch.sign(latent[:, 0] * latent[:, 1]) * latent[:, 2].abs()
    prepared = prepare(latent[None, :, :1], latent[None, :, 1:2], target, torch.arange(4000) < 2000,
                       components=1, gaussianise=True)
    assert atoms(prepared).abs().max() < 0.01


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x1, x2, y, fit = layered_world(8)
    on_cpu = prepare(x1, x2, y, fit, components=5, gaussianise=True)
    on_gpu = prepare(x1.cuda().float(), x2.cuda(), y.cuda(), fit.cuda(), components=5, gaussianise=True)
    assert on_gpu.samples.device.type == "cuda" and on_gpu.record == on_cpu.record
    assert torch.allclose(on_gpu.samples.cpu(), prepare(x1.float(), x2, y, fit, components=5,
                                                        gaussianise=True).samples, atol=1e-9)
