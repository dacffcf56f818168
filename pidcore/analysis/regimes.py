"""Task regimes (synergy- or knowledge-driven) and family strategies (fusion- or language-centric)."""

from __future__ import annotations

import pandas as pd

REGIME_RULE = ("A task is synergy-driven when S exceeds U2 averaged over the models shown, knowledge-driven "
               "otherwise. A family is fusion-centric when its S exceeds its U2 averaged over the tasks shown, "
               "language-centric otherwise (atoms at each model's last checkpoint, output layer).")


def final_rows(atoms: pd.DataFrame) -> pd.DataFrame:
    """Each model's last checkpoint (highest step; all rows when steps are unknown) at its output layer."""
    steps = atoms["step"].fillna(-1)
    last_step = steps.groupby(atoms["model"]).transform("max")
    return atoms[(steps == last_step) & (atoms["layer"] == atoms["n_layers"])]


def task_regimes(final: pd.DataFrame) -> dict[str, str]:
    """Each task's regime by the REGIME_RULE."""
    means = final.groupby("task")[["s", "u2"]].mean()
    return {task: "synergy-driven" if row["s"] > row["u2"] else "knowledge-driven" for task, row in means.iterrows()}


def family_strategies(final: pd.DataFrame) -> dict[str, str]:
    """Each family's strategy by the REGIME_RULE."""
    means = final.groupby("family")[["s", "u2"]].mean()
    return {family: "fusion-centric" if row["s"] > row["u2"] else "language-centric"
            for family, row in means.iterrows()}
