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


def flag_reasons(row: pd.Series) -> list[str]:
    """Why one row of atoms with diagnostics and letter mass is untrustworthy; empty when it is fine."""
    if pd.isna(row["marginal_gap"]):
        return [NO_DIAGNOSTICS]
    reasons = []
    if row["n_samples"] < FLAG_MIN_SAMPLES:
        reasons.append(f"only {row['n_samples']} held-out samples")
    mass = row.get("letter_mass")
    if mass is not None and not math.isnan(mass) and mass < LETTER_MASS_FALLBACK:
        reasons.append(f"letter mass {mass:.2f}")
    if row["marginal_gap"] > FLAG_MAX_MARGINAL_GAP:
        reasons.append(f"marginal gap {row['marginal_gap']:.2f}")
    if not row["sinkhorn_converged"] or row["sinkhorn_residual"] > FLAG_MAX_SINKHORN_RESIDUAL:
        reasons.append(f"Sinkhorn residual {row['sinkhorn_residual']:.1e}")
    return reasons


def with_flags(rows: pd.DataFrame, letter_mass: Mapping[str, float]) -> pd.DataFrame:
    """Rows joined with diagnostics, plus their run's mean letter mass and a `flags` column ("" when fine)."""
    flagged = rows.copy()
    flagged["letter_mass"] = flagged["run_id"].map(letter_mass).astype(float)
    flagged["flags"] = ["; ".join(flag_reasons(row)) for _, row in flagged.iterrows()]
    return flagged
