"""The three layer phases of the paper (silent, language build-up, synergistic fusion) in one logit-lens curve."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from pidcore.atoms import ATOMS, PHASE_MIN_BITS, PHASE_RELATIVE

PHASE_RULE = (
    f"Threshold e = max({PHASE_MIN_BITS} bits, {PHASE_RELATIVE:.0%} of the largest total R+U1+U2+S over layers). "
    "Silent: the layers from the first one shown (the embeddings, where stored) on where every atom shown is within "
    "e of 0; it counts as a phase when it spans at least two layers. Language build-up: a layer after the silent "
    "ones and before the last where U2 >= e and U2 >= S. Synergistic fusion: S peaks (at least e) in the last "
    "quarter of the layers (the last layer at least). An atom a figure does not show (NULL) is left out of each "
    "test. Three-phase pattern: all three found, in order and not overlapping (the silent phase ends before the "
    "language build-up begins, and the language build-up ends before the fusion begins)."
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
        """Whether the paper's pattern holds: all three phases, each ending before the next begins (see PHASE_RULE)."""
        spans = (self.silent, self.language, self.fusion)
        return None not in spans and all(earlier[1] < later[0] for earlier, later in zip(spans, spans[1:]))

    def describe(self) -> str:
        """The phases found with their layers, e.g. "language build-up 1-3, synergistic fusion 4-4", or "none"."""
        spans = (("silent", self.silent), ("language build-up", self.language), ("synergistic fusion", self.fusion))
        return ", ".join(f"{name} {span[0]}-{span[1]}" for name, span in spans if span is not None) or "none"


def threshold(curve: pd.DataFrame) -> float:
    """The bits below which an atom counts as zero for this curve (atoms not shown left out of the totals)."""
    total = curve[list(ATOMS)].sum(axis=1, min_count=1)
    largest = float(total.max()) if total.notna().any() else 0.0
    return max(PHASE_MIN_BITS, PHASE_RELATIVE * largest)


def detect_phases(curve: pd.DataFrame) -> Phases:
    """The phases of one layer curve: rows with `layer` (0 = embeddings, last = output) and the four atoms, NaN
    where an atom is not shown."""
    curve = curve.sort_values("layer").reset_index(drop=True)
    curve[list(ATOMS)] = curve[list(ATOMS)].astype(float)
    layers = [int(layer) for layer in curve["layer"]]
    e = threshold(curve)
    shown = curve[list(ATOMS)].notna()
    quiet = ((curve[list(ATOMS)].abs() < e) | ~shown).all(axis=1) & shown.any(axis=1)
    quiet = quiet.tolist()
    silent_end = 0
    while silent_end + 1 < len(layers) and quiet[silent_end + 1]:
        silent_end += 1
    silent = (layers[0], layers[silent_end]) if silent_end > 0 and quiet[0] else None
    middle = [i for i in range(silent_end + 1, len(layers) - 1)
              if curve.at[i, "u2"] >= e and not curve.at[i, "u2"] < curve.at[i, "s"]]
    language = (layers[middle[0]], layers[middle[-1]]) if middle else None
    return Phases(silent, language, _fusion(curve, layers, e), e)


def _fusion(curve: pd.DataFrame, layers: list[int], e: float) -> tuple[int, int] | None:
    """From S's peak (or the start of the last quarter) to the last layer, when S peaks there at e or more."""
    if curve["s"].isna().all():
        return None
    peak = int(curve["s"].idxmax())
    last_quarter = len(layers) - 1 - max(1, (len(layers) - 1) // 4)
    if peak > last_quarter and curve.at[peak, "s"] >= e:
        return layers[max(peak, last_quarter + 1)], layers[-1]
    return None
