"""Gaussian PID of jointly Gaussian sources X1 [d1], X2 [d2] and a target Y [dy], from their joint covariance.

Mutual informations are log-determinant ratios of Schur complements, e.g. I(X1;Y) = 1/2 log det S_YY / det S_Y|X1.
The union information Iq is that of the exact Gaussian PID (Tilde-PID, Venkatesh et al. 2023; the BROJA definition
over Gaussian couplings): I(X1,X2;Y) minimised over the Gaussian couplings that keep the (X1, Y) and (X2, Y)
marginals. Whitened, Xi = Hi M + Ni with M, N1, N2 standard and M independent of (N1, N2); a coupling is the noise
cross-covariance C with largest singular value <= 1, and Iq(C) = 1/2 log det(Sigma_N + H H^T) / det Sigma_N is convex
in C. For a scalar target the minimum is max(I(X1;Y), I(X2;Y)) (Barrett 2015), used in closed form; for a vector
target it is found by projected gradient descent, on a problem of the target's size: by the determinant lemma
Iq(C) = 1/2 log det(I + H^T Sigma_N^-1 H), and noise outside the column space of Hi coupled to the other source's
can only add information (it would let that part of Xi, pure noise, cancel the other's), so with Hi = Qi Ri (thin
QR) a minimiser is C = Q1 K Q2^T and the problem is the same one with gains R1, R2 of min(di, dy) rows (as
Thin-PID; checked against the full problem to 2e-13 bits and against Tilde-PID's own code, tests/fixtures). Then
R = I1 + I2 - Iq, U1 = Iq - I2, U2 = Iq - I1, S = I12 - Iq, in bits and never clipped.

From samples, the plug-in log-determinants can be bias-corrected with the Wishart expectation: for the sample
covariance S of d variables from n samples (n - 1 degrees of freedom),
E[log det S] = log det Sigma + d log(2 / (n - 1)) + sum_{i=1..d} digamma((n - i) / 2).
That corrects the mutual informations; the minimised union information of a vector target has no such correction,
so bias correction is refused there.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from pidcore.atoms import ATOMS, Atoms
from pidcore.devices import resolve_device
from pidcore.estimators.batched import BatchedPID
from pidcore.estimators.information import to_bits
from pidcore.estimators.intervals import percentile_interval

CONFIDENCE = 0.95
_MAX_SINGULAR = 1 - 1e-9  # couplings stay just inside the unit ball, where Sigma_N is invertible
_MAX_STEPS = 10_000
_TOLERANCE_NATS = 1e-10  # an entry's descent stops when a step lowers its union information by no more than this
_RESTART_SHRINK = 0.9  # a restart starts from the solution times this, off the unit sphere
_RESTART_GAIN_NATS = 1e-7  # restarts go on while they lower the union information by more than this
_MAX_RESTARTS = 10
_ARMIJO = 1e-4
_MAX_HALVINGS = 60
_RESAMPLE_CHUNK = 32  # bootstrap resamples whose covariances are formed together


class GaussianPID(BatchedPID):
    """Atoms and mutual informations in bits of jointly Gaussian variables, shaped like the covariances' batch."""


def gaussian_pid_from_covariance(cov, d1: int, d2: int, n_samples: int | None = None) -> GaussianPID:
    """Exact Gaussian PID of the joint covariance [..., D, D] of (X1, X2, Y) in that order, in bits.

    With `n_samples`, `cov` is taken as a sample covariance of that many samples and every log-determinant is
    bias-corrected (module docstring).
    """
    cov = _validated_covariance(cov, d1, d2)
    dy = cov.shape[-1] - d1 - d2
    if dy > 1 and n_samples is not None:
        raise NotImplementedError(f"bias correction of the union information of a vector target (dy = {dy}) is not "
                                  "implemented; only the mutual informations have a Wishart correction")
    target = range(d1 + d2, d1 + d2 + dy)
    i1 = _mutual_information_bits(cov, range(d1), target, n_samples)
    i2 = _mutual_information_bits(cov, range(d1, d1 + d2), target, n_samples)
    i12 = _mutual_information_bits(cov, range(d1 + d2), target, n_samples)
    iq = torch.maximum(i1, i2) if dy == 1 else union_information_bits(cov, d1, d2)
    return GaussianPID(r=i1 + i2 - iq, u1=iq - i2, u2=iq - i1, s=i12 - iq, i1=i1, i2=i2, i12=i12, iq=iq)


def union_information_bits(cov, d1: int, d2: int) -> torch.Tensor:
    """Iq in bits of covariances [..., D, D], minimised numerically over Gaussian couplings (any dy, no closed form)."""
    cov = _validated_covariance(cov, d1, d2)
    h1, h2 = (_thin(gain) for gain in _whitened_gains(cov, d1, d2))
    gains = torch.cat([h1, h2], dim=-2).reshape(-1, h1.shape[-2] + h2.shape[-2], cov.shape[-1] - d1 - d2)
    return to_bits(_minimised_union_nats(gains, h1.shape[-2])).reshape(cov.shape[:-2])


def _thin(gain: torch.Tensor) -> torch.Tensor:
    """A source's gains [..., d, dy] as the equivalent [..., min(d, dy), dy] (module docstring): R of the thin QR."""
    return gain if gain.shape[-2] <= gain.shape[-1] else torch.linalg.qr(gain, mode="reduced").R


def gaussian_pid(x1, x2, y, *, bias_correction: bool = False, n_bootstrap: int = 0, seed: int = 0,
                 device: str | torch.device = "auto") -> Atoms:
    """Gaussian PID atoms in bits of samples x1 [n, d1], x2 [n, d2], y [n] or [n, dy] via their sample covariance.

    `bias_correction` corrects the log-determinants for n (module docstring); `n_bootstrap` > 0 adds 95% percentile
    bounds over that many seeded resamples of the samples (bias-corrected alike). Bias correction is refused for a
    vector target (module docstring).
    """
    joint, d1, d2 = _joint_samples(x1, x2, y, resolve_device(device))
    n_samples = len(joint) if bias_correction else None
    atoms = gaussian_pid_from_covariance(sample_covariance(joint), d1, d2, n_samples).atoms()
    if n_bootstrap <= 0:
        return atoms
    resampled = _bootstrap_atoms(joint, d1, d2, n_bootstrap, seed, n_samples).cpu()
    bounds = {name: percentile_interval(resampled[:, index], CONFIDENCE) for index, name in enumerate(ATOMS)}
    return Atoms(*atoms.as_dict().values(), bounds=bounds)


def sample_covariance(samples: torch.Tensor) -> torch.Tensor:
    """The unbiased (n - 1) covariance of samples [..., n, D], as [..., D, D]."""
    centred = samples - samples.mean(-2, keepdim=True)
    return centred.transpose(-1, -2) @ centred / (samples.shape[-2] - 1)


def log_det_bias(dim: int, n_samples: int) -> float:
    """E[log det S] - log det Sigma in nats for the (n - 1) sample covariance S of `dim` Gaussian variables."""
    degrees = n_samples - 1
    if degrees < dim:
        raise ValueError(f"bias correction needs more samples than {dim} variables + 1, got {n_samples}")
    halves = (degrees - np.arange(dim)) / 2
    return float(dim * np.log(2 / degrees) + torch.special.digamma(torch.as_tensor(halves)).sum())


def _mutual_information_bits(cov: torch.Tensor, source: range, target: range, n_samples: int | None) -> torch.Tensor:
    """I(source; target) in bits from the Schur complement: 1/2 log det S_tt / det S_t|s (bias-corrected for n)."""
    source_index, target_index = list(source), list(target)
    s_ss = cov[..., source_index, :][..., source_index]
    s_sy = cov[..., source_index, :][..., target_index]
    s_yy = cov[..., target_index, :][..., target_index]
    conditional = s_yy - s_sy.transpose(-1, -2) @ torch.linalg.solve(s_ss, s_sy)
    nats = 0.5 * (torch.logdet(s_yy) - torch.logdet(conditional))
    if n_samples is not None:
        nats = nats - 0.5 * (log_det_bias(len(source), n_samples) + log_det_bias(len(target), n_samples)
                             - log_det_bias(len(source) + len(target), n_samples))
    return to_bits(nats)


def _whitened_gains(cov: torch.Tensor, d1: int, d2: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gains H1 [..., d1, dy], H2 [..., d2, dy] of the whitened channels Xi = Hi M + Ni (M, Ni standard)."""
    target = slice(d1 + d2, cov.shape[-1])
    target_root = torch.linalg.cholesky(cov[..., target, target])
    gains = []
    for source in (slice(0, d1), slice(d1, d1 + d2)):
        mixing = torch.linalg.solve_triangular(target_root, cov[..., target, source], upper=False).transpose(-1, -2)
        noise_root = torch.linalg.cholesky(cov[..., source, source] - mixing @ mixing.transpose(-1, -2))
        gains.append(torch.linalg.solve_triangular(noise_root, mixing, upper=False))
    return gains[0], gains[1]


def _union_nats_and_gradient(coupling: torch.Tensor, gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Iq(C) = 1/2 log det(Sigma_N + H H^T) / det Sigma_N in nats [B], and its gradient in C [B, d1, d2], given the
    gains' Gram matrix H H^T [B, d1 + d2, d1 + d2]; from one Cholesky factor of each matrix (unchecked, so no
    synchronisation: a failed one gives Iq = inf, never accepted)."""
    d1 = coupling.shape[-2]
    noise = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device).repeat(len(gram), 1, 1)
    noise[:, :d1, d1:] = coupling
    noise[:, d1:, :d1] = coupling.transpose(-1, -2)
    total_root, total_failed = torch.linalg.cholesky_ex(noise + gram)
    noise_root, noise_failed = torch.linalg.cholesky_ex(noise)
    value = _log_diagonal(total_root) - _log_diagonal(noise_root)
    value = torch.where((total_failed != 0) | (noise_failed != 0), torch.inf, value)  # rounding off the ball: refused
    gradient = torch.cholesky_inverse(total_root) - torch.cholesky_inverse(noise_root)
    return value, gradient[:, :d1, d1:]


def _log_diagonal(root: torch.Tensor) -> torch.Tensor:
    """1/2 log det of the matrix whose Cholesky factor is `root`."""
    return root.diagonal(dim1=-2, dim2=-1).log().sum(-1)


def _projected(coupling: torch.Tensor) -> torch.Tensor:
    """The coupling with its singular values clipped to just under 1 (the nearest valid one in spectral norm)."""
    u, singular, vh = torch.linalg.svd(coupling, full_matrices=False)
    return u @ torch.diag_embed(singular.clamp(max=_MAX_SINGULAR)) @ vh


def _minimised_union_nats(gains: torch.Tensor, d1: int) -> torch.Tensor:
    """min over couplings C of Iq(C) [B] in nats. Descends from the better of the independent coupling (C = 0) and
    the projection of H1 H2^+ (under which X1's noise follows X2's as closely as the gains allow); then, since
    near the unit sphere the objective is badly conditioned and a descent that reaches it can stall there, descends
    again from the solution pulled inside (times _RESTART_SHRINK), keeping each entry's restart while it gains."""
    gram = gains @ gains.transpose(-1, -2)
    coupling, value = _descended(_starting_coupling(gains, gram, d1), gram)
    active = torch.arange(len(gains), device=gains.device)
    for _ in range(_MAX_RESTARTS):
        restarted, restarted_value = _descended(coupling[active] * _RESTART_SHRINK, gram[active])
        better = restarted_value < value[active] - _RESTART_GAIN_NATS
        improved = active[better]
        coupling[improved], value[improved] = restarted[better], restarted_value[better]
        active = improved
        if not len(active):
            break
    return value


def _descended(coupling: torch.Tensor, gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected gradient descent from `coupling` [B, d1, d2]: Barzilai-Borwein steps (the short form, s.y / y.y,
    which takes 40% fewer steps here than s.s / s.y) and an Armijo search, each entry on its own, leaving the batch
    once a step gains no more than the tolerance. The final C and Iq [B]."""
    coupling = coupling.clone()
    value, gradient = _union_nats_and_gradient(coupling, gram)
    step = torch.ones_like(value)
    active = torch.arange(len(gram), device=gram.device)
    for _ in range(_MAX_STEPS):
        old, old_value, old_gradient = coupling[active], value[active], gradient[active]
        new, new_value, new_gradient, accepted = _armijo_step(old, old_value, old_gradient, step[active],
                                                              gram[active])
        coupling[active], value[active], gradient[active] = new, new_value, new_gradient
        moved, turned = new - old, new_gradient - old_gradient
        curvature = (moved * turned).sum((-2, -1))
        step[active] = torch.where(curvature > 0, curvature / (turned * turned).sum((-2, -1)).clamp(min=1e-300), 1.0)
        active = active[accepted & (old_value - new_value > _TOLERANCE_NATS)]
        if not len(active):
            return coupling, value
    warnings.warn(f"the Gaussian union information did not converge in {_MAX_STEPS} steps", RuntimeWarning)
    return coupling, value


def _starting_coupling(gains: torch.Tensor, gram: torch.Tensor, d1: int) -> torch.Tensor:
    """Per entry, the better start [B, d1, d2] of C = 0 and C = P(H1 H2^+) (P: projected())."""
    aligned = _projected(gains[:, :d1] @ torch.linalg.pinv(gains[:, d1:]))
    zero = torch.zeros_like(aligned)
    better = _union_nats_and_gradient(aligned, gram)[0] < _union_nats_and_gradient(zero, gram)[0]
    return torch.where(better[:, None, None], aligned, zero)


def _armijo_step(coupling: torch.Tensor, value: torch.Tensor, gradient: torch.Tensor, step: torch.Tensor,
                 gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One projected step per entry, its length halved until Iq falls enough (Armijo): new C, Iq, gradient, and
    whether a step was accepted (an entry with none keeps its C). Only the entries still searching are evaluated."""
    candidate, new_value, new_gradient = coupling.clone(), value.clone(), gradient.clone()
    accepted = torch.zeros_like(value, dtype=torch.bool)
    pending = torch.arange(len(value), device=value.device)
    for _ in range(_MAX_HALVINGS):
        base, slope = coupling[pending], gradient[pending]
        trial = _projected(base - step[pending, None, None] * slope)
        trial_value, trial_gradient = _union_nats_and_gradient(trial, gram[pending])
        enough = trial_value <= value[pending] - _ARMIJO * (slope * (base - trial)).sum((-2, -1))
        taken = pending[enough]
        candidate[taken], new_value[taken], new_gradient[taken] = trial[enough], trial_value[enough], \
            trial_gradient[enough]
        accepted[taken] = True
        pending = pending[~enough]
        if not len(pending):
            break
        step = step.clone()
        step[pending] = step[pending] / 2
    return candidate, new_value, new_gradient, accepted


def _validated_covariance(cov, d1: int, d2: int) -> torch.Tensor:
    """Check cov is a finite, symmetric, positive-definite [..., D, D] with D > d1 + d2 >= 2; return it as float64."""
    tensor = cov.detach().double() if isinstance(cov, torch.Tensor) else torch.as_tensor(np.asarray(cov, float))
    if tensor.ndim < 2 or tensor.shape[-1] != tensor.shape[-2]:
        raise ValueError(f"cov must be [..., D, D], got shape {tuple(tensor.shape)}")
    if d1 < 1 or d2 < 1 or tensor.shape[-1] <= d1 + d2:
        raise ValueError(f"need d1, d2 >= 1 and a target after them; got d1={d1}, d2={d2}, D={tensor.shape[-1]}")
    if not torch.isfinite(tensor).all():
        raise ValueError("cov contains NaN or infinite entries")
    if not torch.allclose(tensor, tensor.transpose(-1, -2), rtol=1e-8, atol=1e-10):
        raise ValueError("cov is not symmetric")
    if (torch.linalg.cholesky_ex(tensor).info != 0).any():
        raise ValueError("cov is not positive definite (a variable is constant or a linear mix of others)")
    return tensor


def _joint_samples(x1, x2, y, device: torch.device) -> tuple[torch.Tensor, int, int]:
    """The samples side by side as float64 [n, d1 + d2 + dy] on `device`, with d1 and d2."""
    parts = [torch.as_tensor(np.asarray(part, float)) if not isinstance(part, torch.Tensor) else part.detach()
             for part in (x1, x2, y)]
    parts = [part.to(device, torch.float64) for part in parts]
    parts = [part[:, None] if part.ndim == 1 else part for part in parts]
    if any(part.ndim != 2 for part in parts) or len({len(part) for part in parts}) != 1:
        raise ValueError(f"need x1 [n, d1], x2 [n, d2], y [n] or [n, dy]; got {[tuple(p.shape) for p in parts]}")
    return torch.cat(parts, dim=1), parts[0].shape[1], parts[1].shape[1]


def _bootstrap_atoms(joint: torch.Tensor, d1: int, d2: int, resamples: int, seed: int,
                     n_samples: int | None) -> torch.Tensor:
    """The atoms [resamples, 4] of seeded resamples of the samples' rows, drawn chunk by chunk on the CPU."""
    generator = torch.Generator().manual_seed(seed)
    chunks = []
    for start in range(0, resamples, _RESAMPLE_CHUNK):
        size = min(_RESAMPLE_CHUNK, resamples - start)
        picks = torch.randint(len(joint), (size, len(joint)), generator=generator).to(joint.device)
        covariances = sample_covariance(joint[picks])
        chunks.append(gaussian_pid_from_covariance(covariances, d1, d2, n_samples).stacked())
    return torch.cat(chunks)
