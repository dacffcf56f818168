"""Planted test data for the continuous estimators: gate latents embedded as noisy rotated one-hots."""

from __future__ import annotations

import numpy as np

GATES: dict[str, tuple[list[tuple[int, int, int]], int]] = {
    "XOR": ([(0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0)], 2),
    "AND": ([(0, 0, 0), (0, 1, 0), (1, 0, 0), (1, 1, 1)], 2),
    "RDN": ([(0, 0, 0), (1, 1, 1)], 2),
    "Y=A": ([(a, b, a) for a in (0, 1) for b in (0, 1)], 2),
    "Y=B": ([(a, b, b) for a in (0, 1) for b in (0, 1)], 2),
    "COPY": ([(a, b, 2 * a + b) for a in (0, 1) for b in (0, 1)], 4),
}


def smoothed_joint(gate: str, smoothing: float = 1e-3) -> np.ndarray:
    """P[a, b, y] of a gate with uniform outcomes and p(y|a,b) mixed with `smoothing` of uniform."""
    outcomes, k = GATES[gate]
    joint = np.zeros((2, 2, k))
    for a, b, y in outcomes:
        joint[a, b, y] += 1.0 / len(outcomes)
    p_ab = joint.sum(-1, keepdims=True)
    conditional = np.divide(joint, p_ab, out=np.full_like(joint, 1.0 / k), where=p_ab > 0)
    return p_ab * ((1 - smoothing) * conditional + smoothing / k)


def planted_samples(joint: np.ndarray, n: int, dim: int = 16, noise: float = 0.1, seed: int = 0,
                    rotation_seed: int = 0):
    """Draw n samples (a, b) from the joint; return x1, x2 and the ideal posteriors p(y|x1), p(y|x2), p(y|x1,x2).

    The rotations depend only on `rotation_seed`, so splits drawn with different seeds share them.
    """
    rng = np.random.default_rng(seed)
    rotations = np.random.default_rng(rotation_seed)
    rotation1, _ = np.linalg.qr(rotations.standard_normal((dim, dim)))
    rotation2, _ = np.linalg.qr(rotations.standard_normal((dim, dim)))
    m1, m2, _ = joint.shape
    p_ab = joint.sum(-1).ravel()
    cells = rng.choice(len(p_ab), size=n, p=p_ab / p_ab.sum())
    a, b = np.unravel_index(cells, (m1, m2))
    x1 = _embed(a, rotation1, noise, rng)
    x2 = _embed(b, rotation2, noise, rng)
    p_a, p_b = joint.sum(1), joint.sum(0)
    return x1, x2, _posterior(p_a)[a], _posterior(p_b)[b], _posterior(joint)[a, b]


def _posterior(table: np.ndarray) -> np.ndarray:
    """Normalise the last axis; rows with no mass (never sampled) become uniform."""
    total = table.sum(-1, keepdims=True)
    return np.divide(table, total, out=np.full_like(table, 1.0 / table.shape[-1]), where=total > 0)


def _embed(values: np.ndarray, rotation: np.ndarray, noise: float, rng) -> np.ndarray:
    """One-hot in the rotation's dims, rotated, plus Gaussian noise."""
    onehot = np.zeros((len(values), len(rotation)))
    onehot[np.arange(len(values)), values] = 1.0
    return onehot @ rotation + noise * rng.standard_normal(onehot.shape)
