"""`import-paper`: the paper pipeline's stage-2 JSON (features and the three probe distributions) as a one-layer run.

A file holds one model on one task: a list of per-sample records, either at the top level or under
"samples"/"data"/"records", with optional top-level "model", "task" and "family". Each record gives
the image feature x1, the text feature x2, the three letter distributions and optionally the gold
answer (a letter or a 0-based index). FIELDS lists the names accepted for each. Bad records are
skipped, counted and logged; a file with no usable record is an error that says why.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pidcore.atoms import LETTERS, MIN_OPTIONS, PASSES, option_letters
from pidcore.pipeline.layers import estimate_layers
from pidcore.pipeline.settings import ProfileSettings
from pidcore.store import LayerResult, SampleRow, ensure_schema, register_run, write_samples

logger = logging.getLogger(__name__)

FIELDS = {
    "x1": ("x1", "image_feature", "image_features", "vision_feature"),
    "x2": ("x2", "text_feature", "text_features", "language_feature"),
    "image_only": ("p_y_x1", "prob_image_only", "image_only_probs"),
    "text_only": ("p_y_x2", "prob_text_only", "text_only_probs"),
    "full": ("p_y_x1x2", "prob_full", "full_probs"),
    "answer": ("answer", "gold", "label"),
}
LIST_KEYS = ("samples", "data", "records")
SUM_TOLERANCE = 1e-3


class PaperFileError(ValueError):
    """A stage-2 file cannot be imported at all: unreadable, not the expected layout, or no usable record."""


class BadRecord(Exception):
    """One record is unusable; the message is the reason that is logged and counted."""


@dataclass
class PaperRun:
    """The usable records of one stage-2 file, stacked, and the reasons records were skipped."""

    model: str
    task: str
    family: str
    ids: list[str] = field(default_factory=list)
    x1: list[np.ndarray] = field(default_factory=list)
    x2: list[np.ndarray] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)
    gold: list[int | None] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def read_paper_file(path: str | Path) -> PaperRun:
    """Parse one stage-2 file into a PaperRun, skipping (and logging) bad records."""
    path = Path(path)
    top = _load_json(path)
    records = top if isinstance(top, list) else next((top[k] for k in LIST_KEYS if isinstance(top.get(k), list)), None)
    if records is None:
        raise PaperFileError(f"{path.name} holds no list of records (top level, or under one of {LIST_KEYS})")
    meta = top if isinstance(top, dict) else {}
    run = PaperRun(model=str(meta.get("model") or path.stem), task=str(meta.get("task") or meta.get("dataset")
                   or "paper:" + path.stem), family=str(meta.get("family") or "imported"))
    for number, record in enumerate(records):
        row_id = str(record.get("id", number)) if isinstance(record, dict) else str(number)
        try:
            _add_record(run, row_id, record)
        except BadRecord as reason:
            run.skipped.append((row_id, str(reason)))
            logger.warning("%s: skipped record %s: %s", path.name, row_id, reason)
    if not run.ids:
        reasons = Counter(reason for _, reason in run.skipped).most_common(3)
        raise PaperFileError(f"no usable record in {path.name}: {len(run.skipped)} skipped ({reasons})")
    return run


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise PaperFileError(f"stage-2 file not found: {path}")
    try:
        return json.loads(path.read_bytes())
    except ValueError as error:
        raise PaperFileError(f"{path.name} is not valid JSON: {error}") from error


def _field(record: dict, name: str, required: bool = True) -> Any:
    """The record's value for a field under any of its accepted names."""
    for key in FIELDS[name]:
        if key in record:
            return record[key]
    if required:
        raise BadRecord(f"missing {name} (one of {', '.join(FIELDS[name])})")
    return None


def _add_record(run: PaperRun, row_id: str, record: Any) -> None:
    """Validate one record against the run's first one (feature sizes, option count) and append it."""
    if not isinstance(record, dict):
        raise BadRecord("not a JSON object")
    x1, x2 = _vector(_field(record, "x1"), "x1"), _vector(_field(record, "x2"), "x2")
    probs = np.stack([_distribution(_field(record, name), name) for name in PASSES])
    if run.ids:
        expected = (run.x1[0].shape, run.x2[0].shape, run.probs[0].shape[-1])
        if (x1.shape, x2.shape, probs.shape[-1]) != expected:
            raise BadRecord(f"shapes {x1.shape}, {x2.shape}, k={probs.shape[-1]} differ from the first record's "
                            f"{expected[0]}, {expected[1]}, k={expected[2]}")
    gold = _gold(_field(record, "answer", required=False), probs.shape[-1])
    run.ids.append(row_id)
    run.x1.append(x1)
    run.x2.append(x2)
    run.probs.append(probs[:, None, :])
    run.gold.append(gold)


def _vector(value: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise BadRecord(f"{name} is not a list of numbers") from error
    if array.ndim != 1 or array.size == 0 or not np.isfinite(array).all():
        raise BadRecord(f"{name} must be a non-empty list of finite numbers")
    return array


def _distribution(value: Any, name: str) -> np.ndarray:
    array = _vector(value, name).astype(np.float64)
    if not MIN_OPTIONS <= array.size <= len(LETTERS) or (array < 0).any() or abs(array.sum() - 1) > SUM_TOLERANCE:
        raise BadRecord(f"{name} is not a distribution over {MIN_OPTIONS} to {len(LETTERS)} options "
                        f"(size {array.size}, sum {array.sum():.4f})")
    return array / array.sum()


def _gold(value: Any, k: int) -> int | None:
    """The gold option as an index: a letter A.. or an index 0..k-1; None when absent."""
    if value is None or value == "":
        return None
    letters = option_letters(k)
    if isinstance(value, str) and value.strip().upper() in letters:
        return letters.index(value.strip().upper())
    if isinstance(value, int) and 0 <= value < k:
        return value
    raise BadRecord(f"answer {value!r} is neither a letter {letters[0]}-{letters[-1]} nor an index below {k}")


def import_paper_file(path: str | Path, settings: ProfileSettings, n_layers: int = 1) -> list[LayerResult]:
    """Store one stage-2 file as a run whose only layer is the output (layer = n_layers); returns its atoms.

    `settings` gives the database, estimator, seed, device and checkpoint; its model and task, when empty,
    come from the file (its "model"/"task" fields, else its name).
    """
    if n_layers < 1:
        raise PaperFileError(f"n_layers must be at least 1, got {n_layers}")
    run = read_paper_file(path)
    settings = replace(settings, model=settings.model or run.model, task=settings.task or run.task,
                       dataset=f"paper-stage2:{Path(path).resolve()}", layers="last", calibration_samples=0)
    run_id = settings.run_id()
    ensure_schema(settings.db)
    register_run(settings.db, run_id=run_id, model=settings.model_name, family=run.family, task=settings.task_name,
                 checkpoint=settings.checkpoint, step=settings.step, stage=settings.stage, n_layers=n_layers,
                 settings=asdict(settings))
    mass = np.full(3, np.nan, dtype=np.float32)
    write_samples(settings.db, [SampleRow(run_id, sample_id, position, gold, x1, x2, probs, mass)
                                for position, (sample_id, gold, x1, x2, probs)
                                in enumerate(zip(run.ids, run.gold, run.x1, run.x2, run.probs))])
    logger.info("%s: imported %d records, skipped %d", Path(path).name, len(run.ids), len(run.skipped))
    return estimate_layers(settings, run_id)
