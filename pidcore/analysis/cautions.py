"""When the measurement cannot say much: cautions on a run's inputs, probes and total information, each rule stated
once (CAUTION_RULES, thresholds in pidcore.atoms) and applied the same way by `profile`, `findings` and the pages."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from pidcore.atoms import (ATOMS, CAUTION_AGREE_SHARE, CAUTION_CONSTANT_SHARE, CAUTION_FALLBACK_SHARE,
                           CAUTION_UNIFORM_BITS, CAUTION_UNIFORM_SHARE, LETTER_MASS_FALLBACK, NOISE_FLOOR_BITS,
                           PAPER_ESTIMATOR, PASS_LABELS, PASSES)

CONSTANT_INPUT, UNIFORM_PROBE, FALLBACK, NOISE_FLOOR = "constant-input", "uniform-probe", "fallback", "noise-floor"
MASKING_COST = "masking-cost"
RULE_TEXTS = {
    CONSTANT_INPUT: (f"a modality is constant when one question (with its options), or one image (the same stored "
                     f"PNG, by its MD5 digest), appears in at least {CAUTION_CONSTANT_SHARE:.0%} of a run's samples. "
                     "It then carries (almost) no information across the set, so R and its unique atom are near 0 "
                     "by construction, and what the full pass knows beyond the other modality's probe reads as S: "
                     "S then measures what masking the constant input costs the model, not synergy."),
    UNIFORM_PROBE: ("a masked probe (image only with the question masked, or question only with the image masked) "
                    f"is near uniform at a layer when its letter distribution's entropy is within "
                    f"{CAUTION_UNIFORM_BITS} bits of log2(k) for k options (log2(k) minus the entropy is its "
                    "divergence from a uniform guess) on more than "
                    f"{CAUTION_UNIFORM_SHARE:.0%} of the run's samples, judged on the stored distributions before any "
                    "letter-mass fallback. That probe's information, I(X1;Y) or I(X2;Y), is then near 0, so R and "
                    "its modality's unique atom are too, and the full pass's information reads as the other "
                    "modality's unique atom or S."),
    FALLBACK: (f"the estimator's letter-mass fallback (the published convention: a probe whose full-vocabulary mass "
               f"on the option letters is below {LETTER_MASS_FALLBACK} becomes uniform over the options) replaced a "
               f"probe on more than {CAUTION_FALLBACK_SHARE:.0%} of the samples it saw at a layer, as its stored "
               "diagnostics count them. A replaced probe carries no information by construction: the atoms then "
               "describe the fallback, not the model."),
    NOISE_FLOOR: (f"total information I(X1,X2;Y) = R + U1 + U2 + S is below {NOISE_FLOOR_BITS} bits at a layer: the "
                  "answer barely depends on the inputs there, and how that little splits into four atoms is noise. "
                  "The floor is fixed rather than each row's interval because rows without a bootstrap (--bootstrap "
                  "0, imports) have none, and the four atoms' intervals do not give the total's; atoms from a few "
                  f"hundred samples move by several hundredths of a bit when only the split is redrawn. Layer and "
                  f"training charts whose values span less than {NOISE_FLOOR_BITS} bits are drawn on a y-range "
                  f"{2 * NOISE_FLOOR_BITS:g} bits tall, so rounding noise shows as a flat line."),
    MASKING_COST: (f"a masked probe picks the full pass's answer (its most probable letter) on at least "
                   f"{CAUTION_AGREE_SHARE:.0%} of the samples at a layer where S is at least {NOISE_FLOOR_BITS} bits: "
                   "the masked input is then not needed for the decision, and S there is mostly the confidence the "
                   "model loses when that input is replaced by noise (the probe's distribution is flatter than the "
                   "full pass's), which the decomposition cannot tell apart from information only the two inputs "
                   "carry together. Synergy proper leaves each masked probe at chance."),
}
CAUTION_RULES = " ".join(f"{name}: {text}" for name, text in RULE_TEXTS.items())
MASKED = ("image_only", "text_only")
# A constant modality: what is the same, its name, its unique atom, and the other modality's probe that S is then
# measured from.
CONSTANT_MODALITIES = {"question": ("the question (with its options)", "X2", "U2", "image_only"),
                       "image": ("the image (by content)", "X1", "U1", "text_only")}
# The input each masked probe replaces by noise.
MASKED_INPUTS = {"image_only": "the question", "text_only": "the image"}
# What a near-uniform probe leaves: the information it carries, its atoms, and the atoms the full pass's goes to.
UNIFORM_MEANINGS = {"image_only": ("I(X1;Y)", "R and U1", "U2 or S"), "text_only": ("I(X2;Y)", "R and U2", "U1 or S")}


@dataclass(frozen=True)
class Caution:
    """One rule's warning on one run (model, task, checkpoint): `kind` is the rule's name, `layers` where a per-layer
    rule fires (empty for a rule on the run's inputs), and `detail` says it at the deepest of those layers."""

    model: str
    task: str
    checkpoint: str
    kind: str
    detail: str
    layers: tuple[int, ...] = ()

    def line(self) -> str:
        """The caution as one line of text, its rule named first."""
        return f"caution {self.kind}: {self.model} on {self.task} ({self.checkpoint}): {self.detail}"


def cautions(rows: pd.DataFrame, samples: pd.DataFrame, layers: pd.DataFrame) -> list[Caution]:
    """Every caution on the runs of `rows` (rows of the `atoms` view of one estimator with their run_id), from what
    store.read_caution_inputs gives for them (samples, and layers with their diagnostics). Published rows read off
    the paper's figures are not judged: there is no measurement of ours behind them."""
    judged = rows[(rows["estimator"] != PAPER_ESTIMATOR) & rows["run_id"].notna()]
    found = []
    for run_id, run in judged.groupby("run_id", sort=True):
        names = tuple(run.iloc[0][["model", "task", "checkpoint"]])
        diagnostics = layers[layers["run_id"] == run_id]
        found += run_cautions(names, run, samples[samples["run_id"] == run_id],
                              dict(zip(diagnostics["layer"], diagnostics["diagnostics"])))
    return found


def run_cautions(names: tuple[str, str, str], rows: pd.DataFrame, samples: pd.DataFrame,
                 diagnostics: Mapping[int, dict]) -> list[Caution]:
    """The cautions on one run: its inputs from its samples (question, options, image_digest, probs [pass, stored
    layers, k]), and at each layer of `rows` (layer, n_layers and the atoms) its probes, fallback and total."""
    hits = [(CONSTANT_INPUT, modality, None, detail) for modality, detail in constant_inputs(samples)]
    probs = stacked_probs(samples)
    gaps = None if probs is None else _gap(probs)
    for row in rows.dropna(subset=["layer"]).itertuples(index=False):
        layer, at = int(row.layer), _at(int(row.layer), row.n_layers)
        if (index := _stored_index(layer, row.n_layers, gaps)) is not None:
            hits += [(UNIFORM_PROBE, probe, layer, detail) for probe, detail in uniform_probes(gaps[:, :, index], at)]
            hits += [(MASKING_COST, probe, layer, detail)
                     for probe, detail in masking_costs(probs[:, :, index], gaps[:, :, index], row.s, at)]
        if (detail := fallback_share(diagnostics.get(layer, {}), at)) is not None:
            hits.append((FALLBACK, None, layer, detail))
        if (detail := below_floor(row, at)) is not None:
            hits.append((NOISE_FLOOR, None, layer, detail))
    return _merged(names, hits)


def constant_inputs(samples: pd.DataFrame) -> list[tuple[str, str]]:
    """(modality, detail) for the question (with its options) and the image where one value fills at least
    CAUTION_CONSTANT_SHARE of the samples that store it."""
    questions = [(question, options) for question, options in zip(samples["question"], samples["options"])
                 if pd.notna(question)]
    found = []
    for modality, values in (("question", questions), ("image", list(samples["image_digest"].dropna()))):
        if not values:
            continue
        count = Counter(values).most_common(1)[0][1]
        if count >= CAUTION_CONSTANT_SHARE * len(values):
            what, name, atom, probe = CONSTANT_MODALITIES[modality]
            found.append((modality, f"{what} is the same in {count} of {len(values)} samples: {name} carries no "
                                    f"information across this set, so R and {atom} are near 0 by construction and "
                                    f"what the full pass knows beyond the {PASS_LABELS[probe]} probe reads as S"))
    return found


def stacked_probs(samples: pd.DataFrame) -> np.ndarray | None:
    """Every stored letter distribution [sample, pass, stored layer, k]; None without samples (or with samples of
    differing stored layers or option counts)."""
    probs = [np.asarray(array, dtype=np.float64) for array in samples["probs"]]
    if not probs or any(array.ndim != 3 for array in probs) or len({array.shape for array in probs}) != 1:
        return None
    return np.stack(probs)


def _stored_index(layer: int, n_layers: object, gaps: np.ndarray | None) -> int | None:
    """Where a layer sits among the stored ones (they are the run's last layers: all for `profile`, the output only
    for an import); None where it is not stored or the depth is unknown."""
    if gaps is None or pd.isna(n_layers):
        return None
    index = layer - (int(n_layers) + 1 - gaps.shape[2])
    return index if 0 <= index < gaps.shape[2] else None


def _gap(probs: np.ndarray) -> np.ndarray:
    """log2(k) - H(p) over the last axis (the k letters), in bits."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p_log_p = np.where(probs > 0, probs * np.log2(probs), 0.0)
    return np.log2(probs.shape[-1]) + p_log_p.sum(axis=-1)


def uniform_probes(gaps: np.ndarray, at: str) -> list[tuple[str, str]]:
    """(probe, detail) for each masked probe near uniform on more than CAUTION_UNIFORM_SHARE of the samples, from
    their gaps [sample, pass] at one layer."""
    found = []
    for probe in MASKED:
        near = int((gaps[:, PASSES.index(probe)] < CAUTION_UNIFORM_BITS).sum())
        if near > CAUTION_UNIFORM_SHARE * len(gaps):
            information, atoms, rest = UNIFORM_MEANINGS[probe]
            found.append((probe, f"the {PASS_LABELS[probe]} probe is near uniform on {near} of {len(gaps)} samples "
                                 f"{at}: {information} is near 0, so {atoms} are too and the full pass's "
                                 f"information reads as {rest}"))
    return found


def masking_costs(probs: np.ndarray, gaps: np.ndarray, s: float, at: str) -> list[tuple[str, str]]:
    """(probe, detail) for each masked probe that picks the full pass's answer on at least CAUTION_AGREE_SHARE of the
    samples where S is at least NOISE_FLOOR_BITS, from the distributions [sample, pass, k] and their gaps from
    uniform [sample, pass] at one layer."""
    if pd.isna(s) or s < NOISE_FLOOR_BITS:
        return []
    full = PASSES.index("full")
    answers = probs[:, full].argmax(axis=-1)
    found = []
    for probe in MASKED:
        agree = int((probs[:, PASSES.index(probe)].argmax(axis=-1) == answers).sum())
        if agree >= CAUTION_AGREE_SHARE * len(probs):
            entropy = np.log2(probs.shape[-1]) - gaps[:, [PASSES.index(probe), full]].mean(axis=0)
            found.append((probe, f"the {PASS_LABELS[probe]} probe picks the full pass's answer on {agree} of "
                                 f"{len(probs)} samples {at}, yet S = {s:+.3f} bits: S there is mostly the confidence "
                                 f"lost when {MASKED_INPUTS[probe]} is replaced by noise (mean entropy "
                                 f"{entropy[0]:.2f} bits against the full pass's {entropy[1]:.2f}), not synergy"))
    return found


def fallback_share(diagnostics: Mapping, at: str) -> str | None:
    """The detail where the estimator's letter-mass fallback (its stored `fallback` diagnostics) replaced a probe
    on more than CAUTION_FALLBACK_SHARE of the samples it saw (fitted plus held out); None otherwise."""
    fallback, seen = diagnostics.get("fallback"), _count(diagnostics, "n_fit") + _count(diagnostics, "n_held_out")
    if not isinstance(fallback, Mapping) or fallback.get("applied") != "yes" or not seen:
        return None
    replaced = {name: _count(fallback.get("replaced"), name) for name in PASSES}
    heavy = [f"the {PASS_LABELS[name]} probe on {count} of {seen} ({count / seen:.0%})"
             for name, count in replaced.items() if count > CAUTION_FALLBACK_SHARE * seen]
    if not heavy:
        return None
    return (f"the letter-mass fallback replaced {'; '.join(heavy)} by the uniform distribution {at}: a replaced probe "
            "carries no information by construction")


def _count(values: object, key: str) -> int:
    """A count stored under `key` in decoded diagnostics; 0 where it is missing or not a whole number."""
    value = values.get(key) if isinstance(values, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def below_floor(row: object, at: str) -> str | None:
    """The detail where a row's total information R + U1 + U2 + S is below NOISE_FLOOR_BITS; None otherwise (or
    where an atom is missing)."""
    values = [getattr(row, atom) for atom in ATOMS]
    if any(pd.isna(value) for value in values) or sum(values) >= NOISE_FLOOR_BITS:
        return None
    return (f"I(X1,X2;Y) = R + U1 + U2 + S = {sum(values):+.4f} bits {at}, below the {NOISE_FLOOR_BITS}-bit noise "
            "floor: the answer barely depends on the inputs, and its split into atoms is noise")


def _at(layer: int, n_layers: object) -> str:
    """Where a per-layer caution holds: "at layer 3", "(the output)" added at the model's last."""
    return f"at layer {layer}" + (" (the output)" if pd.notna(n_layers) and layer == int(n_layers) else "")


def _merged(names: tuple[str, str, str], hits: list[tuple[str, str | None, int | None, str]]) -> list[Caution]:
    """One caution per rule and subject (modality or probe), in the rules' order: the layers where it fires, said
    at the deepest of them."""
    groups: dict[tuple[str, str | None], list[tuple[int | None, str]]] = {}
    for kind, subject, layer, detail in hits:
        groups.setdefault((kind, subject), []).append((layer, detail))
    order = list(RULE_TEXTS)
    found = []
    for (kind, _), fired in sorted(groups.items(), key=lambda item: order.index(item[0][0])):
        layers = tuple(sorted(layer for layer, _ in fired if layer is not None))
        deepest = max(fired, key=lambda item: -1 if item[0] is None else item[0])[1]
        found.append(Caution(*names, kind, deepest, layers))
    return found


def as_records(found: list[Caution]) -> list[dict]:
    """The cautions as plain data for JSON: model, task, checkpoint, kind, detail and layers (a list)."""
    return [{**asdict(caution), "layers": list(caution.layers)} for caution in found]
