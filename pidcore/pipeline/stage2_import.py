"""`import-paper`: stage-2 output (features and the three probe distributions) as one-layer runs.

A folder in the paper pipeline's layout holds `train/<model>.json` and `val/<model>.json`: every model present
in both becomes a run fitted on train and evaluated on val. A single file becomes a run split by the estimator.
The paper's probabilities come after its letter-mass fallback, so it is not applied again.

A run that fails after it was registered (a store or estimator error) is removed again, so a failed file leaves
no row behind; every failure surfaces as a ValueError (PaperFileError) with the real reason. In a folder, the
other models are still imported, and the failed ones are named together at the end (PartialImportError).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pidcore.atoms import PAPER_SPLITS
from pidcore.pipeline.layers import estimate_layers
from pidcore.pipeline.settings import IMPORTED_PREFIX, ProfileSettings
from pidcore.pipeline.stage2_records import PaperFileError, Stage2Records, read_stage2_file
from pidcore.store import LayerResult, SampleRow, ensure_schema, read_runs, register_run, write_samples
from pidcore.store.write import RunConflict, delete_runs

logger = logging.getLogger(__name__)


@dataclass
class Imported:
    """One imported run: its model, the output layer's result, and what was skipped per split file."""

    model: str
    results: list[LayerResult]
    kept: int
    skipped: dict[str, list[tuple[str, str]]]


class PartialImportError(PaperFileError):
    """Some models of a stage-2 folder failed (each named with its reason); `imported` holds the ones stored."""

    def __init__(self, message: str, imported: list[Imported]) -> None:
        super().__init__(message)
        self.imported = imported


def import_stage2(path: str | Path, settings: ProfileSettings, n_layers: int = 1, widen_uniform: bool = False,
                  family: str | None = None) -> list[Imported]:
    """Import a train/val folder (every model in both) or a single file; the runs' only layer is the output
    (layer = n_layers). `settings` gives the database, estimator, seed, device and checkpoint; an empty model,
    task or family comes from the file (its "model"/"task"/"family" fields, else its name, else "imported") or,
    for a folder, from the file and folder names. A model is named by that string whole, never read as a path.
    Imported again, a run takes the new family (said in a warning); another n_layers is refused."""
    if n_layers < 1:
        raise PaperFileError(f"n_layers must be at least 1, got {n_layers}")
    path = Path(path)
    if path.is_dir():
        return _import_folder(path, settings, n_layers, widen_uniform, family or "imported")
    records = read_stage2_file(path, widen_uniform)
    model = settings.model or records.model
    settings = replace(settings, model=model, name=model, task=settings.task or records.task,
                       dataset=f"{IMPORTED_PREFIX}{path.resolve()}:{_digest(path)}:widen={widen_uniform}",
                       fallback_upstream=records.conversation_layout)
    results = _store(settings, family or records.family, n_layers, {None: records})
    return [Imported(settings.model_name, results, len(records.ids), {path.name: records.skipped})]


def _import_folder(folder: Path, settings: ProfileSettings, n_layers: int, widen_uniform: bool,
                   family: str) -> list[Imported]:
    """Every model with a file in both train/ and val/, each imported on its own: a failed model is named in a
    PartialImportError raised after the others are stored."""
    missing = [split for split in PAPER_SPLITS if not (folder / split).is_dir()]
    if missing:
        raise PaperFileError(f"{folder} has no {' or '.join(missing)}/ folder; a stage-2 folder holds train/ and val/")
    stems = {split: {file.stem for file in (folder / split).glob("*.json")} for split in PAPER_SPLITS}
    for split, other in (("train", "val"), ("val", "train")):
        for stem in sorted(stems[split] - stems[other]):
            logger.warning("%s: %s/%s.json has no %s/ counterpart; not imported", folder.name, split, stem, other)
    models = sorted(stems["train"] & stems["val"])
    if not models:
        raise PaperFileError(f"{folder} has no model with a file in both train/ and val/")
    imported, failed = [], []
    for model in models:
        try:
            imported.append(_import_model(folder, model, settings, n_layers, widen_uniform, family))
        except ValueError as error:
            failed.append(f"{model}: {error}")
    if failed:
        kept = ", ".join(run.model for run in imported) or "none"
        raise PartialImportError(f"{len(failed)} of {len(models)} models not imported ({'; '.join(failed)}); "
                                 f"imported: {kept}", imported)
    return imported


def _import_model(folder: Path, model: str, settings: ProfileSettings, n_layers: int, widen_uniform: bool,
                  family: str) -> Imported:
    """One model of a stage-2 folder: both files read and checked whole, then stored as one run."""
    files = {split: folder / split / f"{model}.json" for split in PAPER_SPLITS}
    records = {split: read_stage2_file(file, widen_uniform) for split, file in files.items()}
    digest = ":".join(_digest(file) for file in files.values())
    run_settings = replace(settings, model=model, name=model, task=settings.task or folder.name, fallback_upstream=True,
                           dataset=f"{IMPORTED_PREFIX}{folder.resolve()}/{model}:{digest}:widen={widen_uniform}")
    results = _store(run_settings, family, n_layers, records)
    return Imported(model, results, sum(len(found.ids) for found in records.values()),
                    {f"{split}/{model}.json": found.skipped for split, found in records.items()})


def _digest(path: Path) -> str:
    """A short hash of a file's bytes, so an edited file makes a new run instead of reusing the old one."""
    return hashlib.sha1(path.read_bytes()).hexdigest()[:12]


def _store(settings: ProfileSettings, family: str, n_layers: int,
           splits: dict[str | None, Stage2Records]) -> list[LayerResult]:
    """Register the run, write every kept record with its split, and estimate the output layer."""
    widths = {found.probs[0].shape[-1] for found in splits.values()}
    if len(widths) != 1:
        raise PaperFileError(f"train and val files disagree on the number of options: {sorted(widths)}")
    settings = replace(settings, layers="last", calibration_samples=0)
    run_id = settings.run_id()
    created: list[str] = []  # the run, once known to be new: an earlier import's run is never removed
    with _removed_on_failure(settings.db, created):
        ensure_schema(settings.db)
        if run_id not in set(read_runs(settings.db)["run_id"]):
            created.append(run_id)
        try:
            changes = register_run(settings.db, run_id=run_id, model=settings.model_name, family=family,
                                   task=settings.task_name, checkpoint=settings.checkpoint, step=settings.step,
                                   stage=settings.stage, n_layers=n_layers, settings=asdict(settings))
        except RunConflict as conflict:
            raise PaperFileError(f"{conflict}; import it with --n-layers {conflict.stored_depth} as before, or into "
                                 f"another --db to store it with depth {n_layers}") from conflict
        if changes:
            logger.warning("run %s (%s on %s) was imported before; its names now follow this import: %s", run_id,
                           settings.model_name, settings.task_name, "; ".join(changes))
        rows = _sample_rows(run_id, splits)
        write_samples(settings.db, rows)
        logger.info("%s: imported %d records", settings.model_name, len(rows))
        return estimate_layers(settings, run_id)


def _sample_rows(run_id: str, splits: dict[str | None, Stage2Records]) -> list[SampleRow]:
    """The kept records of every split as sample rows, ids prefixed by their split in a folder's runs."""
    rows, position = [], 0
    for split, found in splits.items():
        prefix = "" if split is None else f"{split}:"
        for sample_id, gold, x1, x2, probs, mass in zip(found.ids, found.gold, found.x1, found.x2, found.probs,
                                                        found.mass):
            rows.append(SampleRow(run_id, prefix + sample_id, position, gold, x1, x2, probs[:, None, :],
                                  mass[:, None], PAPER_SPLITS.get(split)))
            position += 1
    return rows


@contextmanager
def _removed_on_failure(db: str, created: list[str]) -> Iterator[None]:
    """On any failure remove the runs in `created` (those this import registered), so a failed file leaves no
    row; a failure that is not a ValueError (a store, Arrow or estimator error) becomes a PaperFileError that names
    its type and message. An interrupt is re-raised as it is."""
    try:
        yield
    except BaseException as error:
        cleanup = _remove(db, created)
        if not isinstance(error, Exception) or (isinstance(error, ValueError) and cleanup is None):
            raise
        reason = str(error) if isinstance(error, ValueError) else _describe(error)
        left = "" if cleanup is None else f"; its partial rows could not be removed: {cleanup}"
        raise PaperFileError(reason + left) from error


def _remove(db: str, run_ids: list[str]) -> str | None:
    """Delete the runs' rows; None when that worked, else what went wrong."""
    try:
        delete_runs(db, run_ids)
    except Exception as error:
        return _describe(error)
    return None


def _describe(error: BaseException) -> str:
    """An error as its type and message, the way a traceback's last line shows it."""
    return f"{type(error).__name__}: {error}"
