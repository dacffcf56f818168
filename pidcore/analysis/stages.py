"""Whether synergy is learned in stage 2 (visual instruction tuning) rather than in stage 1 (projector alignment)."""

from __future__ import annotations

import pandas as pd

from pidcore.atoms import STAGE2_RISE_BITS

STAGE2_RULE = (f"Stage-2 rise in S: S at the final checkpoint exceeds S at the end of stage 1 by more than "
               f"{STAGE2_RISE_BITS} bits.")


def stage2_rise(trajectory: pd.DataFrame) -> float | None:
    """S at the last checkpoint minus S at the last stage-1 checkpoint (rows: stage, step, s); None without both."""
    stage1 = trajectory[trajectory["stage"] == "1"].sort_values("step")
    ordered = trajectory.sort_values("step")
    if stage1.empty or ordered.empty or ordered.iloc[-1]["stage"] == "1":
        return None
    return float(ordered.iloc[-1]["s"] - stage1.iloc[-1]["s"])


def is_stage2_rise(rise: float | None) -> bool:
    """The STAGE2_RULE applied to a stage2_rise value."""
    return rise is not None and rise > STAGE2_RISE_BITS
