"""The canonical gates of DESIGN.md section 2, defined once: each gate's joint distribution P[x1, x2, y] with its exact
atoms in bits, and planted continuous data drawn from a gate for the continuous estimators (tests and benchmarks).

The planted features are noisy rotated one-hots; the rotations depend only on `rotation_seed`, so a fitting
split and a held-out split drawn with different seeds share one feature map (as a real model's features do).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pidcore.atoms import Atoms


def gate_joint(outcomes: list[str], probabilities: list[float] | None = None) -> np.ndarray:
    """A joint P[x1, x2, y] from outcome strings like "011", uniform unless probabilities are given."""
    triples = [tuple(int(c) for c in outcome) for outcome in outcomes]
    shape = tuple(max(t[i] for t in triples) + 1 for i in range(3))
    joint = np.zeros(shape)
    for triple, p in zip(triples, probabilities or [1 / len(triples)] * len(triples)):
        joint[triple] += p
    return joint


@dataclass(frozen=True)
class Gate:
    """A gate's joint distribution and its exact atoms in bits."""

    joint: np.ndarray
    exact: Atoms


GATES = {
    "XOR": Gate(gate_joint(["000", "011", "101", "110"]), Atoms(0, 0, 0, 1)),
    "AND": Gate(gate_joint(["000", "010", "100", "111"]), Atoms(0.311278, 0, 0, 0.5)),
    "COPY": Gate(gate_joint(["000", "011", "102", "113"]), Atoms(0, 1, 1, 0)),
    "RDN": Gate(gate_joint(["000", "111"]), Atoms(1, 0, 0, 0)),
    "Y=X1": Gate(gate_joint(["000", "010", "101", "111"]), Atoms(0, 1, 0, 0)),
    "Y=X2": Gate(gate_joint(["000", "011", "100", "111"]), Atoms(0, 0, 1, 0)),
    "SUM": Gate(gate_joint(["000", "011", "101", "112"]), Atoms(0.5, 0, 0, 1)),
    "REDUCED_OR": Gate(gate_joint(["000", "011", "101"], [0.5, 0.25, 0.25]), Atoms(0.311278, 0, 0, 0.688722)),
}
PLANTED = ("XOR", "AND", "RDN", "Y=X1", "Y=X2", "COPY")


def smoothed_joint(name: str, smoothing: float = 1e-3) -> np.ndarray:
    """A gate's joint with p(y|x1,x2) mixed with `smoothing` of uniform (so every posterior has full support)."""
    joint = GATES[name].joint
    k = joint.shape[-1]
    p_ab = joint.sum(-1, keepdims=True)
    conditional = np.divide(joint, p_ab, out=np.full_like(joint, 1.0 / k), where=p_ab > 0)
    return p_ab * ((1 - smoothing) * conditional + smoothing / k)


def planted_splits(name: str, n_fit: int = 2048, n_held: int = 2048):
    """A smoothed gate's joint and two planted splits (seeds 1 and 2) that share one feature map."""
    joint = smoothed_joint(name)
    return joint, planted_samples(joint, n_fit, seed=1), planted_samples(joint, n_held, seed=2)


def planted_samples(joint: np.ndarray, n: int, dim: int = 16, noise: float = 0.1, seed: int = 0,
                    rotation_seed: int = 0):
    """Draw n samples (a, b) from the joint; return x1, x2 and the ideal posteriors p(y|x1), p(y|x2), p(y|x1,x2)."""
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


def dit_atoms(joint: np.ndarray) -> list[float]:
    """The test-only oracle: R, U1, U2, S from dit's exact cone-program BROJA solver."""
    import dit
    from dit.pid import PID_BROJA

    cells = [(index, joint[index]) for index in np.ndindex(*joint.shape) if joint[index] > 0]
    pid = PID_BROJA(dit.Distribution([cell[0] for cell in cells], [cell[1] for cell in cells]), method="cone")
    return [pid.get_pi(((0,), (1,))), pid.get_pi(((0,),)), pid.get_pi(((1,),)), pid.get_pi(((0, 1),))]
