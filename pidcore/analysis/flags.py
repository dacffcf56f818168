"""When to distrust a row of atoms: the rule the dashboard flags by, stated once."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from pidcore.atoms import FLAG_MAX_MARGINAL_GAP, FLAG_MAX_SINKHORN_RESIDUAL, FLAG_MIN_SAMPLES, LETTER_MASS_FALLBACK

FLAG_RULE = (f"Flagged when the held-out set has fewer than {FLAG_MIN_SAMPLES} samples, the full pass puts less "
             f"than {LETTER_MASS_FALLBACK:.0%} of its probability on the option letters (the published fallback "
             f"threshold), a probe's mean answer distribution differs from the full pass's by more than "
             f"{FLAG_MAX_MARGINAL_GAP} (marginal gap), or Sinkhorn did not converge (residual above "
             f"{FLAG_MAX_SINKHORN_RESIDUAL:g}).")
NO_DIAGNOSTICS = "no diagnostics"
JOIN_KEYS = ["model", "task", "checkpoint", "layer", "estimator"]


def join_diagnostics(atoms: pd.DataFrame, diagnostics: pd.DataFrame) -> pd.DataFrame:
    """The `atoms` rows with their run id and diagnostics (from store.read_diagnostics) joined; NaN where absent."""
    return atoms.merge(diagnostics, on=JOIN_KEYS, how="left", suffixes=("", "_diag"))


def flag_reasons(n_samples: int, letter_mass: float, marginal_gap: float, sinkhorn_converged: bool,
                 sinkhorn_residual: float) -> list[str]:
    """Why one row of atoms is untrustworthy by the FLAG_RULE; empty when it is fine (NaN: not measured)."""
    if math.isnan(marginal_gap):
        return [NO_DIAGNOSTICS]
    reasons = []
    if n_samples < FLAG_MIN_SAMPLES:
        reasons.append(f"only {n_samples} held-out samples")
    if letter_mass < LETTER_MASS_FALLBACK:
        reasons.append(f"letter mass {letter_mass:.2f}")
    if marginal_gap > FLAG_MAX_MARGINAL_GAP:
        reasons.append(f"marginal gap {marginal_gap:.2f}")
    if not sinkhorn_converged or sinkhorn_residual > FLAG_MAX_SINKHORN_RESIDUAL:
        reasons.append(f"Sinkhorn residual {sinkhorn_residual:.1e}")
    return reasons


def with_flags(rows: pd.DataFrame, letter_mass: Mapping[str, float]) -> pd.DataFrame:
    """Rows joined with diagnostics, plus their run's mean letter mass and a `flags` column ("" when fine)."""
    flagged = rows.copy()
    flagged["letter_mass"] = flagged["run_id"].map(letter_mass).astype(float)
    columns = ["n_samples", "letter_mass", "marginal_gap", "sinkhorn_converged", "sinkhorn_residual"]
    flagged["flags"] = ["; ".join(flag_reasons(*values)) for values in flagged[columns].itertuples(index=False)]
    return flagged
