"""Whether synergy is learned in stage 2 (visual instruction tuning) rather than in stage 1 (projector alignment)."""

from __future__ import annotations

import pandas as pd

from pidcore.atoms import STAGE2_RISE_BITS

STAGE2_RULE = (f"Stage-2 rise in S: S at the last stage-2 checkpoint exceeds S at the last stage-1 checkpoint by "
               f"more than {STAGE2_RISE_BITS} bits (checkpoints whose stage is known, in step order; a step may be "
               "only an index).")


def training_checkpoints(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of checkpoints whose stage and step are known, in step order: the ones a trajectory is made of."""
    return rows[rows["stage"].notna() & rows["step"].notna()].sort_values("step")


def stage2_rise(trajectory: pd.DataFrame) -> float | None:
    """S at the last stage-2 checkpoint minus S at the last stage-1 checkpoint (rows: stage, step, s); None
    without both or where either S is not known."""
    ordered = training_checkpoints(trajectory).dropna(subset=["s"])
    stage1, stage2 = ordered[ordered["stage"] == "1"], ordered[ordered["stage"] == "2"]
    if stage1.empty or stage2.empty:
        return None
    return float(stage2.iloc[-1]["s"] - stage1.iloc[-1]["s"])


def is_stage2_rise(rise: float | None) -> bool:
    """The STAGE2_RULE applied to a stage2_rise value."""
    return rise is not None and rise > STAGE2_RISE_BITS


def stage_progress(trajectory: pd.DataFrame) -> pd.Series:
    """Each checkpoint's place in training with every stage the same width, so that runs with other step counts
    line up: stage k (in order) spans k-1 to k, from the previous stage's last step (0 for the first) to its own
    last step. Rows: stage, step (known); the index is kept."""
    ordered = training_checkpoints(trajectory)
    progress = pd.Series(float("nan"), index=trajectory.index)
    start = 0.0
    for position, stage in enumerate(sorted(ordered["stage"].unique(), key=_stage_order)):
        steps = ordered.loc[ordered["stage"] == stage, "step"].astype(float)
        end = float(steps.max())
        width = end - start
        progress[steps.index] = position + (1.0 if width <= 0 else (steps - start) / width)
        start = end
    return progress


def _stage_order(stage: str) -> tuple:
    """Stages in numeric order where they are numbers ("1" < "2" < "10"), else by name."""
    return (0, int(stage), "") if str(stage).isdigit() else (1, 0, str(stage))
