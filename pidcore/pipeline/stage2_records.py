"""Reading stage-2 files: per-sample features and the three probe distributions, one model on one task.

Two layouts are read:
- the paper pipeline's own output (RiiShin/pid-lvlm-analysis): a JSON list of records `{"id"?, "image",
  "num_options", "conversations": [{"from": "human", ...}, {"from": "gpt", "value", "label", "v_feature",
  "l_feature", "v_prob", "l_prob", "vl_prob", "v_orig_prob"?, "l_orig_prob"?, "vl_orig_prob"?}]}`. v is the
  image-only probe p(y|x1) with the feature x1, l the text-only probe p(y|x2) with x2, vl the full pass;
  probabilities are zero-padded past num_options; the *_orig_prob are the vocabulary's probabilities of the
  letters, whose sum over the options is the letter mass;
- a flat layout: records with x1, x2, the three distributions and an optional answer under the names in FIELDS,
  at the top level or under "samples"/"data"/"records", with optional top-level "model", "task", "family".

A record is kept whole or skipped whole, with its reason counted and logged; nothing is appended before every
check has passed, so no label can shift onto another record. Every record is checked before any is kept, and the
file's shapes (feature sizes, option width) are the most common among the checked records, so an odd record is the
one skipped, wherever it stands.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from pidcore.atoms import LETTERS, MIN_OPTIONS, PASSES, option_letters

logger = logging.getLogger(__name__)

FIELDS = {
    "x1": ("x1", "image_feature", "image_features", "vision_feature"),
    "x2": ("x2", "text_feature", "text_features", "language_feature"),
    "image_only": ("p_y_x1", "prob_image_only", "image_only_probs"),
    "text_only": ("p_y_x2", "prob_text_only", "text_only_probs"),
    "full": ("p_y_x1x2", "prob_full", "full_probs"),
    "answer": ("answer", "gold", "label"),
}
# The paper's names for the three probes, by our pass names, and the prefix of their letter probabilities.
CONVERSATION_PROBES = {"full": "vl", "image_only": "v", "text_only": "l"}
LIST_KEYS = ("samples", "data", "records")
SUM_TOLERANCE = 1e-3
PADDING_TOLERANCE = 1e-6


class PaperFileError(ValueError):
    """A stage-2 file cannot be imported at all: unreadable, not the expected layout, or no usable record."""


class BadRecord(Exception):
    """One record is unusable; the message is the reason that is logged and counted."""


@dataclass
class Stage2Records:
    """The usable records of one stage-2 file, and the (id, reason) of every record skipped.

    probs[i] is [pass, k] (full, image-only, text-only); mass[i] is [pass], NaN where the file gives none.
    """

    model: str
    task: str
    family: str
    ids: list[str] = field(default_factory=list)
    x1: list[np.ndarray] = field(default_factory=list)
    x2: list[np.ndarray] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)
    mass: list[np.ndarray] = field(default_factory=list)
    gold: list[int | None] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    conversation_layout: bool = False
    _kept_ids: set[str] = field(default_factory=set, repr=False)
    _shapes: tuple | None = field(default=None, repr=False)
    _shapes_from: str = field(default="", repr=False)

    def settle_shapes(self, checked: list[tuple[str, tuple]]) -> None:
        """Fix the file's shapes (x1, x2, k) as the most common among the checked records' (row id, shapes), ties
        going to the earliest, so one odd record, first or not, is the one skipped rather than every other."""
        if not checked:
            return
        counts = Counter(shapes for _, shapes in checked)
        self._shapes, count = counts.most_common(1)[0]
        first = next(row_id for row_id, shapes in checked if shapes == self._shapes)
        self._shapes_from = (f"the first record of the most common shapes ({count} of {len(checked)} records), "
                             f"{first!r}:")

    def add(self, row_id: str, x1: np.ndarray, x2: np.ndarray, probs: np.ndarray, mass: np.ndarray,
            gold: int | None) -> None:
        """Append one checked record, after checking it against the ids already kept and the file's shapes: those
        `settle_shapes` chose, else the first kept record's."""
        if row_id in self._kept_ids:
            raise BadRecord(f"duplicate id {row_id!r}")
        if self._shapes is None and self.ids:
            self._shapes = (self.x1[0].shape, self.x2[0].shape, self.probs[0].shape[-1])
            self._shapes_from = "the first record's"
        if self._shapes is not None and (x1.shape, x2.shape, probs.shape[-1]) != self._shapes:
            x1_shape, x2_shape, k = self._shapes
            raise BadRecord(f"shapes {x1.shape}, {x2.shape}, k={probs.shape[-1]} differ from {self._shapes_from} "
                            f"{x1_shape}, {x2_shape}, k={k}")
        self._kept_ids.add(row_id)
        self.ids.append(row_id)
        self.x1.append(x1)
        self.x2.append(x2)
        self.probs.append(probs)
        self.mass.append(mass)
        self.gold.append(gold)


def read_stage2_file(path: str | Path, widen_uniform: bool = False) -> Stage2Records:
    """Parse one stage-2 file of either layout, skipping (and logging) bad records.

    widen_uniform: a probe that is exactly uniform over its n options, n below the padded width, becomes uniform
    over the whole width, as the paper's MMBench stage 3 does (its pope and pmc scripts do not).
    """
    path = Path(path)
    top = _load_json(path)
    meta = top if isinstance(top, dict) else {}
    records = top if isinstance(top, list) else next((meta[k] for k in LIST_KEYS if isinstance(meta.get(k), list)),
                                                     None)
    if records is None:
        raise PaperFileError(f"{path.name} holds no list of records (top level, or under one of {LIST_KEYS})")
    conversations = any(isinstance(record, dict) and "conversations" in record for record in records[:10])
    found = Stage2Records(model=str(meta.get("model") or path.stem),
                          task=str(meta.get("task") or meta.get("dataset") or "paper:" + path.stem),
                          family=str(meta.get("family") or "imported"), conversation_layout=conversations)
    # per record in file order: (id, its checked arrays or its reason)
    checked = list(zip((_record_id(record, number) for number, record in enumerate(records)),
                       _conversations(records, widen_uniform) if conversations
                       else [_checked(record, _flat) for record in records]))
    found.settle_shapes([(row_id, (arrays[0].shape, arrays[1].shape, arrays[2].shape[-1]))
                         for row_id, arrays in checked if not isinstance(arrays, str)])
    for row_id, arrays in checked:
        try:
            if isinstance(arrays, str):
                raise BadRecord(arrays)
            found.add(row_id, *arrays)
        except BadRecord as reason:
            found.skipped.append((row_id, str(reason)))
            logger.warning("%s: skipped record %s: %s", path.name, row_id, reason)
    if not found.ids:
        reasons = Counter(reason for _, reason in found.skipped).most_common(3)
        raise PaperFileError(f"no usable record in {path.name}: {len(found.skipped)} skipped ({reasons})")
    return found


def _record_id(record: Any, number: int) -> str:
    """A record's own id, or its 0-based position when it has none (or is not an object)."""
    value = record.get("id") if isinstance(record, dict) else None
    return str(number) if value is None else str(value)


def _load_json(path: Path) -> Any:
    """The file's JSON; a missing file, a non-file (FIFO, device), bad JSON, non-UTF-8 text or nesting too deep to
    parse is a PaperFileError."""
    if not path.exists():
        raise PaperFileError(f"stage-2 file not found: {path}")
    if not path.is_file():
        raise PaperFileError(f"stage-2 file is not a regular file: {path}")
    try:
        return json.loads(path.read_bytes())
    except ValueError as error:
        raise PaperFileError(f"{path.name} is not valid JSON: {error}") from error
    except RecursionError as error:
        raise PaperFileError(f"{path.name} is nested too deeply to parse as JSON") from error


def _checked(record: Any, check: Callable[[dict], tuple]) -> tuple | str:
    """One record's checked (x1, x2, probs, mass, gold) by `check` (_flat or _conversation), or the reason it is
    skipped."""
    try:
        if not isinstance(record, dict):
            raise BadRecord("not a JSON object")
        return check(record)
    except BadRecord as reason:
        return str(reason)


def _checked_conversation(record: Any, widen_uniform: bool) -> tuple | str:
    """One conversation-layout record checked alone: its (x1, x2, probs, mass, gold), or the reason it is skipped."""
    return _checked(record, partial(_conversation, widen_uniform=widen_uniform))


def _conversations(records: list, widen_uniform: bool) -> list[tuple | str]:
    """_checked_conversation of every record, the numeric checks run at once over the records whose lists share
    their lengths; a record that fails one (or does not fit such a batch) is then checked alone, in file order, which
    names its reason (and warns as before). Values are those _conversation gives: the same operations, row by row."""
    found: list[tuple | str | None] = [None] * len(records)  # None: to check alone
    batches: dict[tuple, tuple[list[int], list[dict]]] = {}  # by (num_options, list lengths): records, gpt turns
    for index, record in enumerate(records):
        turn, n = _gpt_turn(record)
        values = [turn.get(name) for name in _BATCHED] if turn is not None else []
        if values and all(type(value) is list for value in values[:_REQUIRED]) and all(
                value is None or type(value) is list for value in values[_REQUIRED:]):
            key = (n, *(-1 if value is None else len(value) for value in values))
            if key not in batches:
                batches[key] = ([], [])
            batches[key][0].append(index)
            batches[key][1].append(turn)
    for (n, *lengths), (indices, turns) in batches.items():
        with np.errstate(all="ignore"):  # a record failing a check warns when it is checked alone, as before
            arrays = _batch_arrays(n, lengths, turns, widen_uniform)
        for row, (index, turn) in enumerate(zip(indices, turns)):
            if arrays is not None and arrays[0][row]:
                try:
                    found[index] = (*(array[row] for array in arrays[1:]), _letter(turn.get("label"), n))
                except BadRecord as reason:
                    found[index] = str(reason)
    return [_checked_conversation(record, widen_uniform) if checked is None else checked
            for record, checked in zip(records, found)]


# The gpt turn's lists that _conversations checks at once: the two features and the three probes (required), and
# the three letter probabilities (optional), in PASSES order.
_BATCHED = ("v_feature", "l_feature", *(f"{CONVERSATION_PROBES[name]}_prob" for name in PASSES),
            *(f"{CONVERSATION_PROBES[name]}_orig_prob" for name in PASSES))
_REQUIRED = 2 + len(PASSES)


def _gpt_turn(record: Any) -> tuple[dict | None, int]:
    """A record's gpt turn and its num_options, when it is an object with both valid (else None, 0)."""
    if not isinstance(record, dict):
        return None, 0
    conversation = record.get("conversations")
    n = record.get("num_options")
    if not isinstance(conversation, list) or not isinstance(n, int) or isinstance(n, bool) or not (
            MIN_OPTIONS <= n <= len(LETTERS)):
        return None, 0
    for turn in conversation:
        if isinstance(turn, dict) and turn.get("from") == "gpt":
            return turn, n
    return None, 0


def _batch_arrays(n: int, lengths: list[int], turns: list[dict], widen_uniform: bool) -> tuple | None:
    """_conversation's checks and arrays for gpt turns whose _BATCHED lists have these lengths (-1: absent): (whether
    each record passes every numeric check, x1, x2, probs, mass), one row per turn; None when they cannot be batched."""
    x1_size, x2_size, *probs_sizes = lengths[:_REQUIRED]
    width = probs_sizes[0]
    if (min(x1_size, x2_size) < 1 or len(set(probs_sizes)) > 1 or not MIN_OPTIONS <= width <= len(LETTERS)
            or width < n or any(0 <= size < n for size in lengths[_REQUIRED:])):
        return None
    columns = []
    for name, size in zip(_BATCHED, lengths):
        if size < 0:
            columns.append(None)
            continue
        try:
            array = np.array([turn[name] for turn in turns], dtype=np.float32)
        except (TypeError, ValueError, OverflowError):
            return None
        if array.shape != (len(turns), size):
            return None
        columns.append(array)
    x1, x2, *probes = columns[:_REQUIRED]
    good = np.isfinite(x1).all(axis=1) & np.isfinite(x2).all(axis=1)
    distributions = []
    for probe in probes:
        good &= np.isfinite(probe).all(axis=1)
        wide = probe.astype(np.float64)
        sums = wide.sum(axis=1)
        good &= ~(wide < 0).any(axis=1) & ~(np.abs(sums - 1) > SUM_TOLERANCE)
        distribution = wide / sums[:, None]
        good &= ~(distribution[:, n:] > PADDING_TOLERANCE).any(axis=1)
        distributions.append(distribution)
    probs = np.stack(distributions, axis=1)
    if widen_uniform and n < width:
        uniform = np.isclose(probs[:, :, :n], 1.0 / n).all(axis=2) & np.isclose(probs[:, :, n:], 0.0).all(axis=2)
        probs[uniform] = 1.0 / width
    mass = np.full((len(turns), len(PASSES)), float("nan"))
    for index, letters in enumerate(columns[_REQUIRED:]):
        if letters is not None:
            good &= np.isfinite(letters).all(axis=1) & ~(letters < 0).any(axis=1)
            sums = letters[:, :n].sum(axis=1)
            good &= ~(sums > 1 + SUM_TOLERANCE)
            mass[:, index] = sums
    return good, x1, x2, probs, mass


def _flat(record: dict) -> tuple:
    """Check one flat-layout record whole: its (x1, x2, probs, mass, gold)."""
    x1, x2 = _vector(_field(record, "x1"), "x1"), _vector(_field(record, "x2"), "x2")
    probs = _stacked({name: _distribution(_field(record, name), name) for name in PASSES})
    gold = _gold(_field(record, "answer", required=False), probs.shape[-1])
    return x1, x2, probs, np.full(len(PASSES), np.nan), gold


def _conversation(record: dict, widen_uniform: bool) -> tuple:
    """Check one record of the paper's conversation layout whole (its gpt turn): its (x1, x2, probs, mass,
    gold)."""
    conversation = record.get("conversations")
    turns = conversation if isinstance(conversation, list) else []
    turn = next((turn for turn in turns if isinstance(turn, dict) and turn.get("from") == "gpt"), None)
    if turn is None:
        raise BadRecord("no gpt turn in conversations")
    n = record.get("num_options")
    if not isinstance(n, int) or isinstance(n, bool) or not MIN_OPTIONS <= n <= len(LETTERS):
        raise BadRecord(f"num_options {n!r} is not a whole number from {MIN_OPTIONS} to {len(LETTERS)}")
    x1, x2 = _vector(turn.get("v_feature"), "v_feature"), _vector(turn.get("l_feature"), "l_feature")
    names = [f"{CONVERSATION_PROBES[name]}_prob" for name in PASSES]
    probs = _stacked({name: _padded(turn.get(name), name, n) for name in names})
    if widen_uniform:
        probs = np.stack([_widened(p, n) for p in probs])
    gold = _letter(turn.get("label"), n)
    mass = np.array([_letter_mass(turn.get(f"{CONVERSATION_PROBES[name]}_orig_prob"), n) for name in PASSES])
    return x1, x2, probs, mass, gold


def _stacked(distributions: dict[str, np.ndarray]) -> np.ndarray:
    """The record's distributions, one per pass in PASSES order, as [pass, k]; lengths that differ within the
    record are its reason to be skipped, named."""
    lengths = {name: array.size for name, array in distributions.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{name} {size}" for name, size in lengths.items())
        raise BadRecord(f"its probabilities differ in length ({shown})")
    return np.stack(list(distributions.values()))


def _field(record: dict, name: str, required: bool = True) -> Any:
    """The record's value for a field under any of its accepted names."""
    for key in FIELDS[name]:
        if key in record:
            return record[key]
    if required:
        raise BadRecord(f"missing {name} (one of {', '.join(FIELDS[name])})")
    return None


def _vector(value: Any, name: str) -> np.ndarray:
    """A non-empty 1-d float32 vector of finite numbers."""
    if value is None:
        raise BadRecord(f"missing {name}")
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as error:
        raise BadRecord(f"{name} is not a list of numbers") from error
    if array.ndim != 1 or array.size == 0 or not np.isfinite(array).all():
        raise BadRecord(f"{name} must be a non-empty list of finite numbers")
    return array


def _distribution(value: Any, name: str) -> np.ndarray:
    """A probability vector over MIN_OPTIONS to len(LETTERS) options, renormalised to sum to 1."""
    array = _vector(value, name).astype(np.float64)
    if not MIN_OPTIONS <= array.size <= len(LETTERS) or (array < 0).any() or abs(array.sum() - 1) > SUM_TOLERANCE:
        raise BadRecord(f"{name} is not a distribution over {MIN_OPTIONS} to {len(LETTERS)} options "
                        f"(size {array.size}, sum {array.sum():.4f})")
    return array / array.sum()


def _padded(value: Any, name: str, n: int) -> np.ndarray:
    """A distribution over n options, zero-padded to the file's width."""
    array = _distribution(value, name)
    if array.size < n:
        raise BadRecord(f"{name} has {array.size} entries for {n} options")
    if (array[n:] > PADDING_TOLERANCE).any():
        raise BadRecord(f"{name} puts probability past its {n} options")
    return array


def _widened(probs: np.ndarray, n: int) -> np.ndarray:
    """The MMBench stage-3 convention: uniform over n < width options becomes uniform over the whole width."""
    if n < probs.size and np.allclose(probs[:n], 1.0 / n) and np.allclose(probs[n:], 0.0):
        return np.full(probs.size, 1.0 / probs.size)
    return probs


def _letter_mass(value: Any, n: int) -> float:
    """The vocabulary's probability on the n option letters; NaN when the file does not give it."""
    if value is None:
        return float("nan")
    array = _vector(value, "orig_prob")
    if array.size < n or (array < 0).any() or array[:n].sum() > 1 + SUM_TOLERANCE:
        raise BadRecord(f"orig_prob {array.tolist()} is not the letters' probabilities for {n} options")
    return float(array[:n].sum())


def _letter(value: Any, n: int) -> int | None:
    """The gold label of the paper's layout: one option letter among the first n; None when absent."""
    if value is None or value == "":
        return None
    letters = option_letters(n)
    if isinstance(value, str) and value.strip().upper() in letters:
        return letters.index(value.strip().upper())
    raise BadRecord(f"label {value!r} is not one of the option letters {letters[0]}-{letters[-1]}")


def _gold(value: Any, k: int) -> int | None:
    """The gold option of the flat layout as an index: a letter A.. or an index 0..k-1; None when absent."""
    if value is None or value == "":
        return None
    letters = option_letters(k)
    if isinstance(value, str) and value.strip().upper() in letters:
        return letters.index(value.strip().upper())
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < k:
        return value
    raise BadRecord(f"answer {value!r} is neither a letter {letters[0]}-{letters[-1]} nor an index below {k}")
