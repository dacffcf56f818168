"""When to distrust a row of atoms: the rule the dashboard flags by, stated once."""

from __future__ import annotations

import math

import pandas as pd

MIN_SAMPLES = 50
MIN_LETTER_MASS = 0.3
MAX_MARGINAL_GAP = 0.1
MAX_SINKHORN_RESIDUAL = 1e-3

RULE = (f"Flagged when the held-out set has fewer than {MIN_SAMPLES} samples, the full pass puts less than "
        f"{MIN_LETTER_MASS:.0%} of its probability on the option letters (the published fallback threshold), a "
        f"probe's mean answer distribution differs from the full pass's by more than {MAX_MARGINAL_GAP} (marginal "
        f"gap), or Sinkhorn did not converge (residual above {MAX_SINKHORN_RESIDUAL:g}).")


def flag_reasons(row: pd.Series) -> list[str]:
    """Why one diagnostics row (from store.read_diagnostics) is untrustworthy; empty when it is fine."""
    reasons = []
    if row["n_samples"] < MIN_SAMPLES:
        reasons.append(f"only {row['n_samples']} held-out samples")
    mass = row.get("letter_mass")
    if mass is not None and not math.isnan(mass) and mass < MIN_LETTER_MASS:
        reasons.append(f"letter mass {mass:.2f}")
    if row["marginal_gap"] > MAX_MARGINAL_GAP:
        reasons.append(f"marginal gap {row['marginal_gap']:.2f}")
    if not row["sinkhorn_converged"] or row["sinkhorn_residual"] > MAX_SINKHORN_RESIDUAL:
        reasons.append(f"Sinkhorn residual {row['sinkhorn_residual']:.1e}")
    return reasons


def with_flags(atoms: pd.DataFrame, diagnostics: pd.DataFrame) -> pd.DataFrame:
    """The atoms rows with their diagnostics joined and a `flags` column ("" when fine)."""
    keys = ["model", "task", "checkpoint", "layer", "estimator"]
    joined = atoms.merge(diagnostics, on=keys, how="left", suffixes=("", "_diag"))
    joined["flags"] = ["; ".join(flag_reasons(row)) if not pd.isna(row["marginal_gap"]) else "no diagnostics"
                       for _, row in joined.iterrows()]
    return joined
