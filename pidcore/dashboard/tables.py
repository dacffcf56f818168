"""The tables the breadth page shows beside its charts: the task regimes with their rank correlations (the paper's
Table 2) and the family strategies with their medians, each row marked with its source."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from pidcore.analysis.regimes import CORRELATES, Regime, Strategy


def regime_table(regimes: Mapping[str, Mapping[str, Regime]]) -> pd.DataFrame:
    """One row per (source, task): regime, models, Spearman's rho of accuracy with each correlate and its p."""
    rows = []
    for source, by_task in regimes.items():
        for task, regime in sorted(by_task.items()):
            row = {"source": source, "task": task, "regime": regime.regime, "models": regime.n_models}
            for name, label in CORRELATES.items():
                row[f"rho {label}"] = round(regime.rho[name], 3)
                row[f"p {label}"] = float(f"{regime.p[name]:.2g}")
            row["Steiger p (S vs U2)"] = float(f"{regime.steiger_p:.2g}")
            row["why"] = regime.why
            rows.append(row)
    return pd.DataFrame(rows)


def family_table(strategies: Mapping[str, Mapping[str, Strategy]]) -> pd.DataFrame:
    """One row per (source, family): strategy, median S and U2 on the synergy-driven tasks, models, why."""
    rows = [{"source": source, "family": family, "strategy": strategy.strategy,
             "median S (bits)": round(strategy.median_s, 3), "median U2 (bits)": round(strategy.median_u2, 3),
             "models": strategy.n_models, "why": strategy.why}
            for source, by_family in strategies.items() for family, strategy in sorted(by_family.items())]
    return pd.DataFrame(rows)
