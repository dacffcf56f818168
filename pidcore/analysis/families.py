"""How the two estimator families agree on one run. BATCH (estimators `batch-...`) reads the answer distributions
of three probe passes through the logit lens; the Gaussian PID (`gaussian`, `gaussian-...`; "How Vision Becomes
Language", arXiv 2602.15580) reads the hidden states themselves (image-token mean X1, question-token mean X2, the
output letter logits as target). They measure different things, so their values are not compared; their layer-wise
shapes are, as that paper compares models (profiles correlated > 0.96), and so is its headline, the language-unique
share U2 / I(X1,X2;Y) at the output layer (about 82% there).

For each (model, task, checkpoint) with rows of a BATCH estimator and of a Gaussian one at MIN_COMMON_LAYERS or
more common layers, one Agreement per such pair of estimators (FAMILIES_RULE says it in words)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from pidcore.atoms import ATOMS, GAUSSIAN_ESTIMATOR, NOISE_FLOOR_BITS, SYMBOLS

BATCH = "batch"  # the family of pidcore.pipeline.settings.estimator_name's names, batch-MODE[...]
GAUSSIAN = GAUSSIAN_ESTIMATOR
FAMILY_LABELS = {BATCH: "BATCH (answer distributions through the logit lens)",
                 GAUSSIAN: "Gaussian PID (hidden states)"}
MIN_COMMON_LAYERS = 3  # fewer common layers than this: no curve shape to correlate
CONSTANT_BITS = 1e-9  # a curve spanning less than this over the common layers is constant: no correlation
COMPARED_ATOMS = ("s", "u2")
RUN_KEYS = ["model", "task", "checkpoint"]
FAMILIES_RULE = (
    f"Estimator families: for each run with rows of a BATCH estimator (batch-...) and a Gaussian one ({GAUSSIAN}, "
    f"{GAUSSIAN}-...) at {MIN_COMMON_LAYERS} or more common layers, Pearson's r of their S curves and of their U2 "
    f"curves over those layers (none where a curve spans less than {CONSTANT_BITS:g} bits: constant), and each "
    f"family's language-unique share U2 / (R + U1 + U2 + S) at the output layer (none where that total is below "
    f"the noise floor of {NOISE_FLOOR_BITS} bits). The families measure different things (answer distributions "
    "through the logit lens, hidden states): shapes and shares are compared, never values.")


def estimator_family(estimator: str) -> str | None:
    """The family of an estimator name: GAUSSIAN (`gaussian`, `gaussian-...`), BATCH (`batch-...`), else None (the
    paper's digitized atoms)."""
    for family in (GAUSSIAN, BATCH):
        if estimator == family or estimator.startswith(f"{family}-"):
            return family
    return None


@dataclass(frozen=True)
class Agreement:
    """One run's BATCH and Gaussian estimators side by side: Pearson's r of their curves by atom (s, u2) over the
    common layers and each family's language-unique share at the output layer (by family), None with a reason."""

    model: str
    task: str
    checkpoint: str
    batch: str
    gaussian: str
    layers: int
    output_layer: int | None
    pearson: dict[str, float | None]
    pearson_why: dict[str, str | None]
    u2_share: dict[str, float | None]
    u2_share_why: dict[str, str | None]

    def describe(self) -> str:
        """The agreement in one sentence: the two correlations and the two shares, or why one is missing."""
        rs = [f"{self.pearson[atom]:+.2f}" if self.pearson[atom] is not None else f"none ({self.pearson_why[atom]})"
              for atom in COMPARED_ATOMS]
        names = {BATCH: self.batch, GAUSSIAN: self.gaussian}
        shares = [(f"{self.u2_share[family]:.0%}" if self.u2_share[family] is not None
                   else f"none ({self.u2_share_why[family]})") + f" ({names[family]})" for family in (BATCH, GAUSSIAN)]
        at = "" if self.output_layer is None else f" {self.output_layer}"
        return (f"{self.model} on {self.task} ({self.checkpoint}), {self.batch} against {self.gaussian} over "
                f"{self.layers} common layers: Pearson's r of the S curves is {rs[0]} and of the U2 curves {rs[1]}; "
                f"the language-unique share U2 / I(X1,X2;Y) at the output layer{at} is {shares[0]} and {shares[1]}.")

    def as_record(self) -> dict[str, Any]:
        """The agreement as plain JSON-able data, its sentence under `text`."""
        return {**asdict(self), "text": self.describe()}


def agreements(atoms: pd.DataFrame) -> list[Agreement]:
    """Every BATCH-Gaussian pair of estimators of each (model, task, checkpoint) in rows of the `atoms` view of all
    estimators, with MIN_COMMON_LAYERS or more common layers; runs with one family only give none."""
    found = []
    for (model, task, checkpoint), run in atoms.dropna(subset=["layer"]).groupby(RUN_KEYS, sort=True):
        names = sorted(run["estimator"].unique())
        for batch in [name for name in names if estimator_family(name) == BATCH]:
            for gaussian in [name for name in names if estimator_family(name) == GAUSSIAN]:
                agreement = _agreement((model, task, checkpoint), run, batch, gaussian)
                if agreement is not None:
                    found.append(agreement)
    return found


def _agreement(key: tuple[str, str, str], run: pd.DataFrame, batch: str, gaussian: str) -> Agreement | None:
    """The Agreement of two estimators of one run, None under MIN_COMMON_LAYERS common layers."""
    curves = {name: run[run["estimator"] == name].set_index("layer")[list(ATOMS)] for name in (batch, gaussian)}
    common = curves[batch].index.intersection(curves[gaussian].index).sort_values()
    if len(common) < MIN_COMMON_LAYERS:
        return None
    pearson, pearson_why = {}, {}
    for atom in COMPARED_ATOMS:
        pearson[atom], pearson_why[atom] = _pearson({name: curve.loc[common, atom] for name, curve in curves.items()},
                                                    atom)
    depth = run["n_layers"].max()
    output = None if pd.isna(depth) else int(depth)
    shares, shares_why = {}, {}
    for family, name in ((BATCH, batch), (GAUSSIAN, gaussian)):
        row = curves[name].loc[output] if output in curves[name].index else None
        shares[family], shares_why[family] = language_share(row, output)
    return Agreement(*key, batch, gaussian, len(common), output, pearson, pearson_why, shares, shares_why)


def _pearson(curves: dict[str, pd.Series], atom: str) -> tuple[float | None, str | None]:
    """Pearson's r of two estimators' curves of one atom over the layers both know it, or None and why."""
    both = pd.concat(curves, axis=1).dropna()
    if len(both) < MIN_COMMON_LAYERS:
        return None, (f"{SYMBOLS[atom]} is known at {len(both)} common layers only, fewer than {MIN_COMMON_LAYERS}")
    for name in both:
        values = both[name].to_numpy(dtype=float)
        if np.ptp(values) < CONSTANT_BITS:
            return None, (f"{SYMBOLS[atom]} of {name} is constant, {values[0]:+.3f} bits at the {len(both)} common "
                          "layers")
    return float(np.corrcoef(both.to_numpy(dtype=float).T)[0, 1]), None


def language_share(row: pd.Series | None, layer: int | None) -> tuple[float | None, str | None]:
    """U2 / (R + U1 + U2 + S) of one row (the output layer's), or None and why: no row, an atom missing, or a total
    below NOISE_FLOOR_BITS, where a share of noise says nothing."""
    if row is None:
        return None, "no row at the output layer" + ("" if layer is None else f" {layer}")
    values = [float(row[atom]) for atom in ATOMS]
    if any(math.isnan(value) for value in values):
        return None, "an atom is missing at the output layer"
    total = sum(values)
    if total < NOISE_FLOOR_BITS:
        return None, (f"I(X1,X2;Y) is {total:+.3f} bits at the output layer, below the noise floor of "
                      f"{NOISE_FLOOR_BITS} bits")
    return float(row["u2"]) / total, None
