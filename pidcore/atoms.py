"""The project's vocabulary, defined once: atom names and labels, probe passes, option letters, the thresholds the
rules use, and `Atoms`, the one result type for a dataset's four atoms."""

from __future__ import annotations

import math
import string
from collections.abc import Mapping
from dataclasses import dataclass

ATOMS = ("r", "u1", "u2", "s")
MENU = ("s", "u2", "u1", "r")  # the order the pages offer atoms in: the paper's central contrast, S against U2, first
SYMBOLS = {"r": "R", "u1": "U1", "u2": "U2", "s": "S"}
LABELS = {"r": "R (redundancy)", "u1": "U1 (vision-unique)", "u2": "U2 (language-unique)", "s": "S (synergy)"}
MEANINGS = {"r": "available from either the image or the question", "u1": "only the image has it",
            "u2": "only the question has it", "s": "only the combination has it"}
INFORMATIONS = ("i1", "i2", "i12", "iq")
BOUND_ENDS = ("lo", "hi")
BOUND_COLUMNS = tuple(f"{atom}_{end}" for atom in ATOMS for end in BOUND_ENDS)  # r_lo, r_hi, u1_lo, ...
UNITS = "bits"

PASSES = ("full", "image_only", "text_only")
PASS_LABELS = {"full": "full (image + question)", "image_only": "image only (question masked)",
               "text_only": "question only (image masked)"}

# The estimator name of published atoms read off the paper's figures (pidcore.pipeline.published).
PAPER_ESTIMATOR = "paper-digitized"
# The estimator name of the Gaussian PID on hidden states (the second study's family); its variants are named
# GAUSSIAN_ESTIMATOR + "-VARIANT" (gaussian-pca16, gaussian-raw). pidcore.analysis.families tells the families apart.
GAUSSIAN_ESTIMATOR = "gaussian"
GAUSSIAN_COMPONENTS = 32  # the Gaussian PID's default PCA dimension per source (at most; pidcore.estimators.reduction)

LETTERS = string.ascii_uppercase
MIN_OPTIONS = 2
# What a sample id seen twice in one dataset does: stop the run naming the ids, or keep the first row of each.
DEDUPE_POLICIES = ("error", "first")
# The two splits of a run that fixes one: the estimator is fitted on FIT and evaluated on EVALUATION (the paper's
# train.json and val.json).
FIT, EVALUATION = "fit", "evaluation"
# The paper pipeline's split names (its train/ and val/ folders, its train.json and val.json) and the store's.
PAPER_SPLITS = {"train": FIT, "val": EVALUATION}

# Thresholds of the stated rules (pidcore.analysis); each rule's text quotes these numbers.
STAGE2_RISE_BITS = 0.05
PHASE_MIN_BITS = 0.05
PHASE_RELATIVE = 0.1
LETTER_MASS_FALLBACK = 0.3
FLAG_MIN_SAMPLES = 50
FLAG_MAX_MARGINAL_GAP = 0.1
FLAG_MAX_SINKHORN_RESIDUAL = 1e-3
FLAG_TRAINABLE_BITS = 0.01  # an alignment starting above this conditional term should improve on its initialisation
CAUTION_CONSTANT_SHARE = 0.9  # one question (with its options), or one image, in this share of samples: constant
CAUTION_UNIFORM_BITS = 0.1  # a letter distribution within this of log2(k) (its KL from uniform) is near uniform
CAUTION_UNIFORM_SHARE = 0.5  # a probe near uniform on more than this share of samples says little
CAUTION_FALLBACK_SHARE = 0.5  # a probe replaced by the letter-mass fallback on more than this share of samples
CAUTION_AGREE_SHARE = 0.8  # a masked probe picking the full pass's answer on this share: the other input is not needed
NOISE_FLOOR_BITS = 0.05  # total information I(X1,X2;Y) below this is noise; the least y-range of a curve chart
SIGNIFICANCE = 0.05  # the p-value below which a correlation, or a difference of two, counts
REGIME_MIN_MODELS = 5  # below this, no rank correlation across models reaches p < 0.05
REGIME_MIN_DISTINCT_ACCURACY = 3  # fewer distinct accuracies than this: no spread to correlate with
STRATEGY_MIN_BITS = 0.1  # a family whose median S + U2 is below this carries too little information to classify


def option_letters(count: int) -> list[str]:
    """The letters A, B, ... of `count` options; an error outside MIN_OPTIONS..26."""
    if not MIN_OPTIONS <= count <= len(LETTERS):
        raise ValueError(f"need between {MIN_OPTIONS} and {len(LETTERS)} options, got {count}")
    return list(LETTERS[:count])


@dataclass(frozen=True)
class Atoms:
    """A dataset's four atoms in bits, never clipped, with optional 95% bounds per atom ((low, high) by name)."""

    r: float
    u1: float
    u2: float
    s: float
    bounds: Mapping[str, tuple[float, float]] | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, float]) -> Atoms:
        """The atoms named in a mapping (a dict, a DataFrame row); other keys are ignored."""
        return cls(*(float(values[name]) for name in ATOMS))

    def __getitem__(self, name: str) -> float:
        """An atom or a derived information by name: r, u1, u2, s, i1, i2, i12 or iq."""
        if name not in ATOMS + INFORMATIONS:
            raise KeyError(name)
        return getattr(self, name)

    def as_dict(self) -> dict[str, float]:
        """The four atoms by name."""
        return {name: getattr(self, name) for name in ATOMS}

    def bound_columns(self) -> dict[str, float]:
        """The bounds as columns r_lo, r_hi, u1_lo, ... (NaN where there are none)."""
        bounds = self.bounds or {}
        return {f"{atom}_{end}": float(bounds.get(atom, (math.nan, math.nan))[index])
                for atom in ATOMS for index, end in enumerate(BOUND_ENDS)}

    @property
    def i1(self) -> float:
        """I(X1;Y) = R + U1."""
        return self.r + self.u1

    @property
    def i2(self) -> float:
        """I(X2;Y) = R + U2."""
        return self.r + self.u2

    @property
    def iq(self) -> float:
        """The union information R + U1 + U2."""
        return self.r + self.u1 + self.u2

    @property
    def i12(self) -> float:
        """I(X1,X2;Y) = R + U1 + U2 + S."""
        return self.iq + self.s
