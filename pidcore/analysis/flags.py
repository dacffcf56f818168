"""When to distrust a row of atoms: the rule the dashboard flags by, stated once."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from pidcore.atoms import (FLAG_MAX_MARGINAL_GAP, FLAG_MAX_SINKHORN_RESIDUAL, FLAG_MIN_SAMPLES, FLAG_TRAINABLE_BITS,
                           LETTER_MASS_FALLBACK, PAPER_ESTIMATOR)

FLAG_RULE = (f"Flagged when the held-out set has fewer than {FLAG_MIN_SAMPLES} samples, the full pass puts less "
             f"than {LETTER_MASS_FALLBACK:.0%} of its probability on the option letters (the published fallback "
             f"threshold), a probe's mean answer distribution differs from the full pass's by more than "
             f"{FLAG_MAX_MARGINAL_GAP} (marginal gap), Sinkhorn did not converge (residual above "
             f"{FLAG_MAX_SINKHORN_RESIDUAL:g}), or the alignment networks never improved on their initialisation "
             f"although it sat more than {FLAG_TRAINABLE_BITS} bits above the least the objective can reach, "
             "I(X2;Y) - I(X1;Y) (untrained).")
NO_DIAGNOSTICS = "no diagnostics"
NO_SAMPLE_COUNT = "held-out sample count not stored"
JOIN_KEYS = ["model", "task", "checkpoint", "layer", "estimator"]


def join_diagnostics(atoms: pd.DataFrame, diagnostics: pd.DataFrame) -> pd.DataFrame:
    """The `atoms` rows with their run id and diagnostics (from store.read_diagnostics) joined; NaN where absent."""
    return atoms.merge(diagnostics, on=JOIN_KEYS, how="left", suffixes=("", "_diag"))


def flag_reasons(n_samples: int, letter_mass: float, marginal_gap: float, sinkhorn_converged: bool,
                 sinkhorn_residual: float, initial_bits: float, kept_bits: float, floor_bits: float) -> list[str]:
    """Why one row of atoms is untrustworthy by the FLAG_RULE; empty when it is fine (NaN: not measured)."""
    if math.isnan(marginal_gap):
        return [NO_DIAGNOSTICS]
    reasons = []
    if pd.isna(n_samples):  # NULL in the file (pd.NA, which no comparison may test)
        reasons.append(NO_SAMPLE_COUNT)
    elif n_samples < FLAG_MIN_SAMPLES:
        reasons.append(f"only {n_samples} held-out samples")
    if letter_mass < LETTER_MASS_FALLBACK:
        reasons.append(f"letter mass {letter_mass:.2f}")
    if marginal_gap > FLAG_MAX_MARGINAL_GAP:
        reasons.append(f"marginal gap {marginal_gap:.2f}")
    if not sinkhorn_converged or sinkhorn_residual > FLAG_MAX_SINKHORN_RESIDUAL:
        reasons.append(f"Sinkhorn residual {sinkhorn_residual:.1e}")
    if is_untrained(initial_bits, kept_bits, floor_bits):
        reasons.append(f"untrained alignment ({initial_bits:.3f} -> {kept_bits:.3f} bits)")
    return reasons


def is_untrained(initial_bits: float, kept_bits: float, floor_bits: float) -> bool:
    """The alignment started more than FLAG_TRAINABLE_BITS above the floor of its objective (I(X2;Y) - I(X1;Y))
    and removed none of it."""
    return initial_bits - floor_bits > FLAG_TRAINABLE_BITS and not kept_bits < initial_bits


def with_flags(rows: pd.DataFrame, letter_mass: Mapping[str, float]) -> pd.DataFrame:
    """Rows joined with diagnostics, plus their run's mean letter mass and a `flags` column ("" when fine).
    Published atoms read off the paper's figures have no estimator diagnostics to judge; they are not flagged."""
    flagged = rows.copy()
    flagged["letter_mass"] = flagged["run_id"].map(letter_mass).astype(float)
    columns = ["n_samples", "letter_mass", "marginal_gap", "sinkhorn_converged", "sinkhorn_residual", "initial_bits",
               "kept_bits", "floor_bits"]
    flags = ["; ".join(flag_reasons(*values)) for values in flagged[columns].itertuples(index=False)]
    estimators = flagged["estimator"] if "estimator" in flagged else [None] * len(flagged)
    flagged["flags"] = [("" if estimator == PAPER_ESTIMATOR else flag) for estimator, flag in zip(estimators, flags)]
    return flagged
