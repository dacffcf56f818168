"""The three layer phases of the paper (silent, language build-up, synergistic fusion) in one logit-lens curve."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from pidcore.atoms import ATOMS, PHASE_MIN_BITS, PHASE_RELATIVE

PHASE_RULE = (
    f"Threshold e = max({PHASE_MIN_BITS} bits, {PHASE_RELATIVE:.0%} of the largest total R+U1+U2+S over layers). "
    "Silent: the layers from the embeddings on where every atom is within e of 0; it counts as a phase when it "
    "reaches past the embeddings. Language build-up: a layer after the silent ones and before the last where "
    "U2 >= e and U2 >= S. Synergistic fusion: S peaks (at least e) in the last quarter of the layers (the last "
    "layer at least)."
)


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

    def describe(self) -> str:
        """The phases found with their layers, e.g. "language build-up 1-3, synergistic fusion 4-4", or "none"."""
        spans = (("silent", self.silent), ("language build-up", self.language), ("synergistic fusion", self.fusion))
        return ", ".join(f"{name} {span[0]}-{span[1]}" for name, span in spans if span is not None) or "none"


def threshold(curve: pd.DataFrame) -> float:
    """The bits below which an atom counts as zero for this curve."""
    total = curve[list(ATOMS)].sum(axis=1)
    return max(PHASE_MIN_BITS, PHASE_RELATIVE * float(total.max()))


def detect_phases(curve: pd.DataFrame) -> Phases:
    """The phases of one layer curve: rows with `layer` (0 = embeddings, last = output) and the four atoms."""
    curve = curve.sort_values("layer").reset_index(drop=True)
    layers = curve["layer"].tolist()
    e = threshold(curve)
    quiet = (curve[list(ATOMS)].abs() < e).all(axis=1).tolist()
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
