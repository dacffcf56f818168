"""Rules that name the patterns of the paper in a results table: the three layer phases and a stage-2 rise in S.

They read rows of the `atoms` view (pandas) and return what they found, whichever way it comes out. The same
rules are stated wherever their results are shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

ATOMS = ["r", "u1", "u2", "s"]
MIN_BITS = 0.05
RELATIVE = 0.1

PHASE_RULE = (
    "Threshold e = max(0.05 bits, 10% of the largest total R+U1+U2+S over layers). Silent: the layers from the "
    "embeddings on where every atom is within e of 0; it counts as a phase when it reaches past the embeddings. "
    "Language build-up: a layer after the silent ones and before the last where U2 >= e and U2 >= S. "
    "Synergistic fusion: S peaks (at least e) in the last quarter of the layers (the last layer at least)."
)
STAGE2_RULE = "Stage-2 rise in S: S at the final checkpoint exceeds S at the end of stage 1 by more than 0.05 bits."


@dataclass
class Phases:
    """Layer ranges of the three phases (None when absent) and whether all three appear in order."""

    silent: tuple[int, int] | None
    language: tuple[int, int] | None
    fusion: tuple[int, int] | None
    threshold: float

    @property
    def three_phase(self) -> bool:
        return None not in (self.silent, self.language, self.fusion)


def threshold(curve: pd.DataFrame) -> float:
    """The bits below which an atom counts as zero for this curve."""
    total = curve[ATOMS].sum(axis=1)
    return max(MIN_BITS, RELATIVE * float(total.max()))


def detect_phases(curve: pd.DataFrame) -> Phases:
    """The phases of one layer curve: rows with `layer` (0 = embeddings, last = output) and the four atoms."""
    curve = curve.sort_values("layer").reset_index(drop=True)
    layers = curve["layer"].tolist()
    e = threshold(curve)
    quiet = (curve[ATOMS].abs() < e).all(axis=1).tolist()
    silent_end = 0
    while silent_end + 1 < len(layers) and quiet[silent_end + 1]:
        silent_end += 1
    silent = (layers[0], layers[silent_end]) if silent_end > 0 and quiet[0] else None
    middle = [i for i in range(silent_end + 1, len(layers) - 1)
              if curve.at[i, "u2"] >= e and curve.at[i, "u2"] >= curve.at[i, "s"]]
    language = (layers[middle[0]], layers[middle[-1]]) if middle else None
    peak = int(curve["s"].idxmax())
    last_quarter = len(layers) - 1 - max(1, (len(layers) - 1) // 4)
    fusion = (layers[max(peak, last_quarter + 1)], layers[-1]) if peak > last_quarter and curve.at[peak, "s"] >= e \
        else None
    return Phases(silent, language, fusion, e)


def stage2_rise(trajectory: pd.DataFrame) -> float | None:
    """S at the last checkpoint minus S at the last stage-1 checkpoint (rows: stage, step, s); None without both."""
    stage1 = trajectory[trajectory["stage"] == "1"].sort_values("step")
    ordered = trajectory.sort_values("step")
    if stage1.empty or ordered.empty or ordered.iloc[-1]["stage"] == "1":
        return None
    return float(ordered.iloc[-1]["s"] - stage1.iloc[-1]["s"])


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
