"""Task regimes and family strategies, by the paper's definitions.

A task's regime comes from how accuracy ranks with the atoms across models (the paper's Table 2: Spearman's rho
between accuracy and S, U2, I(X1,X2;Y) and the co-information R - S). A family's strategy comes from its median S
against its median U2 on the synergy-driven tasks. Where the data cannot support a rule, the label says
"undetermined" and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm, spearmanr

from pidcore.atoms import ATOMS, REGIME_MIN_DISTINCT_ACCURACY, REGIME_MIN_MODELS, SIGNIFICANCE, STRATEGY_MIN_BITS

FINAL_CHECKPOINT = "final"
SYNERGY_DRIVEN, KNOWLEDGE_DRIVEN = "synergy-driven", "knowledge-driven"
FUSION_CENTRIC, LANGUAGE_CENTRIC = "fusion-centric", "language-centric"
UNDETERMINED = "undetermined"
# What accuracy is correlated with, by the names the findings use.
CORRELATES = {"s": "S", "u2": "U2", "i12": "I(X1,X2;Y)", "coinfo": "R - S"}

REGIME_RULE = (
    f"A task is synergy-driven when, across models, accuracy ranks with S (Spearman's rho > 0, p < {SIGNIFICANCE}) "
    f"more closely than with U2 (Steiger's test on the two correlations, one-sided p < {SIGNIFICANCE}); otherwise "
    f"S does not dominate and the task is knowledge-driven. Undetermined with fewer than {REGIME_MIN_MODELS} models "
    f"that have an accuracy, or fewer than {REGIME_MIN_DISTINCT_ACCURACY} distinct accuracies. A family is "
    "fusion-centric when its median S exceeds its median U2 over its models on the synergy-driven tasks, "
    "language-centric when it does not; undetermined without a synergy-driven task, or when the two medians add "
    f"up to less than {STRATEGY_MIN_BITS} bits. Atoms at each model's final checkpoint (the one named "
    f"\"{FINAL_CHECKPOINT}\", else the highest step), output layer."
)


@dataclass
class Regime:
    """A task's regime, the rank correlations behind it (rho and p by CORRELATES name) and the reason."""

    regime: str
    rho: dict[str, float]
    p: dict[str, float]
    n_models: int
    steiger_p: float
    why: str


@dataclass
class Strategy:
    """A family's strategy, its medians on the synergy-driven tasks and the reason."""

    strategy: str
    median_s: float
    median_u2: float
    n_models: int
    tasks: list[str]
    why: str


def final_rows(atoms: pd.DataFrame) -> pd.DataFrame:
    """Each model's final checkpoint at its output layer: the checkpoint named "final" where the model has one
    (a released model beside its training checkpoints), else its highest step (all rows when steps are unknown);
    the output layer is layer = n_layers, or a NULL layer (a published model whose depth is not given)."""
    named = atoms["checkpoint"] == FINAL_CHECKPOINT
    has_named = named.groupby(atoms["model"]).transform("any")
    steps = atoms["step"].astype("Float64").fillna(-1)
    last_step = steps.groupby(atoms["model"]).transform("max")
    last = (has_named & named) | (~has_named & (steps == last_step))
    return atoms[last & is_output(atoms)]


def is_output(atoms: pd.DataFrame) -> pd.Series:
    """Whether each row is its model's output layer: layer = n_layers, or a NULL layer (the output of a published
    model whose depth is not given)."""
    return (atoms["layer"].isna() | (atoms["layer"] == atoms["n_layers"])).fillna(False).astype(bool)


def task_regimes(final: pd.DataFrame) -> dict[str, Regime]:
    """Each task's regime by the REGIME_RULE, from final_rows."""
    return {task: _regime(rows) for task, rows in final.groupby("task")}


def _regime(rows: pd.DataFrame) -> Regime:
    rows = rows.dropna(subset=["accuracy"])
    values = {"s": rows["s"], "u2": rows["u2"], "i12": rows[list(ATOMS)].sum(axis=1, min_count=len(ATOMS)),
              "coinfo": rows["r"] - rows["s"]}
    rho, p = {}, {}
    for name, column in values.items():
        rho[name], p[name] = rank_correlation(rows["accuracy"], column)
    n, distinct = len(rows), rows["accuracy"].nunique()
    steiger = steiger_p(rho["s"], rho["u2"], rank_correlation(values["s"], values["u2"])[0], n)
    if n < REGIME_MIN_MODELS:
        return Regime(UNDETERMINED, rho, p, n, steiger, f"only {n} model(s) with an accuracy; a rank correlation "
                                                        f"needs at least {REGIME_MIN_MODELS}")
    if distinct < REGIME_MIN_DISTINCT_ACCURACY:
        shown = ", ".join(f"{value:.3f}" for value in sorted(rows["accuracy"].unique()))
        return Regime(UNDETERMINED, rho, p, n, steiger, f"no spread in accuracy across the {n} models ({shown})")
    summary = (f"rho(accuracy, S) = {rho['s']:+.2f} (p = {p['s']:.2g}), rho(accuracy, U2) = {rho['u2']:+.2f} "
               f"(p = {p['u2']:.2g}), Steiger p = {steiger:.2g}, {n} models")
    if rho["s"] > 0 and p["s"] < SIGNIFICANCE and steiger < SIGNIFICANCE:
        return Regime(SYNERGY_DRIVEN, rho, p, n, steiger, f"accuracy ranks with S more than with U2: {summary}")
    return Regime(KNOWLEDGE_DRIVEN, rho, p, n, steiger, f"S does not dominate: {summary}")


def rank_correlation(x: pd.Series, y: pd.Series) -> tuple[float, float]:
    """Spearman's rho and its two-sided p over the pairs where both are known; NaN when it is undefined."""
    both = pd.concat([x.astype(float), y.astype(float)], axis=1).dropna()
    if len(both) < 3 or both.iloc[:, 0].nunique() < 2 or both.iloc[:, 1].nunique() < 2:
        return math.nan, math.nan
    result = spearmanr(both.iloc[:, 0], both.iloc[:, 1])
    return float(result.statistic), float(result.pvalue)


def steiger_p(r_xy: float, r_xz: float, r_yz: float, n: int) -> float:
    """One-sided p that corr(x, y) exceeds corr(x, z) when y and z are correlated (r_yz), from n pairs: Steiger's
    (1980) Z on Fisher-transformed correlations. NaN when a correlation is undefined or n < 4."""
    if n < 4 or any(math.isnan(value) for value in (r_xy, r_xz, r_yz)):
        return math.nan
    r_xy, r_xz, r_yz = (float(np.clip(value, -0.9999, 0.9999)) for value in (r_xy, r_xz, r_yz))
    mean_square = (r_xy ** 2 + r_xz ** 2) / 2
    f = min(1.0, (1 - r_yz) / (2 * (1 - mean_square)))
    h = (1 - f * mean_square) / (1 - mean_square)
    z = (math.atanh(r_xy) - math.atanh(r_xz)) * math.sqrt((n - 3) / (2 * (1 - r_yz) * h))
    return float(norm.sf(z))


def task_shares(final: pd.DataFrame) -> pd.DataFrame:
    """Per task: the mean over models of S and of U2 as shares of I(X1,X2;Y) (models with I(X1,X2;Y) > 0)."""
    total = final[list(ATOMS)].sum(axis=1, min_count=len(ATOMS))
    shares = pd.DataFrame({"task": final["task"], "s_share": final["s"] / total, "u2_share": final["u2"] / total})
    return shares[total > 0].groupby("task", as_index=False)[["s_share", "u2_share"]].mean()


def family_strategies(final: pd.DataFrame, regimes: dict[str, Regime]) -> dict[str, Strategy]:
    """Each family's strategy by the REGIME_RULE, on the tasks `regimes` calls synergy-driven."""
    synergy_tasks = sorted(task for task, regime in regimes.items() if regime.regime == SYNERGY_DRIVEN)
    return {family: _strategy(rows, synergy_tasks, regimes) for family, rows in final.groupby("family")}


def _strategy(rows: pd.DataFrame, synergy_tasks: list[str], regimes: dict[str, Regime]) -> Strategy:
    if not synergy_tasks:
        kinds = ", ".join(f"{task} {regime.regime}" for task, regime in sorted(regimes.items())) or "no task"
        return Strategy(UNDETERMINED, math.nan, math.nan, 0, [], f"no synergy-driven task to judge on ({kinds})")
    on = rows[rows["task"].isin(synergy_tasks)].dropna(subset=["s", "u2"])
    if on.empty:
        return Strategy(UNDETERMINED, math.nan, math.nan, 0, synergy_tasks,
                        f"no model of this family on a synergy-driven task ({', '.join(synergy_tasks)})")
    median_s, median_u2, n = float(on["s"].median()), float(on["u2"].median()), on["model"].nunique()
    summary = (f"median S {median_s:.3f} and U2 {median_u2:.3f} bits over {n} model(s) on "
               f"{', '.join(synergy_tasks)}")
    if median_s + median_u2 < STRATEGY_MIN_BITS:
        return Strategy(UNDETERMINED, median_s, median_u2, n, synergy_tasks,
                        f"too little information to tell: {summary}")
    kind = FUSION_CENTRIC if median_s > median_u2 else LANGUAGE_CENTRIC
    return Strategy(kind, median_s, median_u2, n, synergy_tasks, summary)
