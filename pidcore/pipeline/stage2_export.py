"""`export-paper`: a stored run written as the paper pipeline's stage-2 output, `DIR/{train,val}/<model>.json`, so
the paper's own stage 3 (RiiShin/pid-lvlm-analysis, `pid/*/batch_vlm_final_*.py`) runs on our probes, and
`import-paper` reads the files back to the same atoms.

Each file is a JSON list of records, as the paper's stage-2 scripts write them (`embeds/qwen2_small_embed.py`):

    {"id", "image": base64 PNG (null where the store kept none), "num_options",
     "conversations": [{"from": "human", "value": question, lettered options and the answer instruction, then
                        "\\n<image>" (null where the store kept no question)},
                       {"from": "gpt", "value": the model's answer letter, "label": the gold letter (absent when
                        unknown), "v_feature": x1, "l_feature": x2, "v_prob", "l_prob", "vl_prob",
                        "v_orig_prob", "l_orig_prob", "vl_orig_prob"}]}

- v is the image-only probe p(y|x1), l the text-only probe p(y|x2), vl the full pass, all read at one layer of the
  logit lens (default: the output, layer = n_layers). The *_prob are the letter distributions after the paper's
  0.3 letter-mass fallback where the chosen estimator applies it (a run imported from stage-2 files already holds
  them after it), zero-padded past num_options to the paper's width: 4, 2 when every sample has 2 options (POPE),
  more when a sample has more than 4.
- The *_orig_prob are the vocabulary's probabilities of the letters: the letter distribution before the fallback
  times the stored letter mass, an exact identity over the options. Past num_options they are 0, because the store
  does not keep the vocabulary's probability of letters that are not options (the paper's files have it). A pass
  whose mass is unknown (a layer of a database written before per-layer mass, an import without *_orig_prob) has
  no *_orig_prob. For a run imported from stage-2 files the stored distribution is already after the fallback, so
  where the fallback replaced a probe its *_orig_prob is its letter mass spread evenly over the options.
- "value" is the argmax of the full pass's letter distribution before the fallback (the paper writes the decoded
  argmax over the whole vocabulary, which the store does not keep; for a run imported from stage-2 files, the
  argmax of the distribution it stored).
- "num_options" is the number of stored options; for a run imported from stage-2 files, the store does not keep a
  record's num_options, so it is the padded width of the imported file.

Splits: train is the fitting split, val the evaluation split. A run with a fixed split (the samples' `split`,
"fit"/"evaluation") keeps it. Otherwise the samples the chosen layer and estimator were evaluated on (the pointwise
rows) are val and the rest train; train is written in the order BATCH fitted them (its seeded permutation, see
estimators/batch.py `seeded_split`), so that importing the files fits on the same samples in the same order. The
round trip export -> import-paper then gives the same atoms when the import uses the run's estimator mode and seed,
and every sample has the same number of options, equal to the padded width (import-paper reads numbers as float32,
as profile stores them). Samples with another option count than the most common one are left out of our estimate
but written (the paper's stage 3 uses them), so an import fits on them too; a width below the padded one (3 options,
padded to 4) gives the import's networks another output size, hence other atoms.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pidcore.atoms import LETTER_MASS_FALLBACK, PAPER_SPLITS, PASSES, option_letters
from pidcore.pipeline.layers import with_fallback
from pidcore.pipeline.settings import applies_fallback, pick_estimator
from pidcore.pipeline.stage2_records import CONVERSATION_PROBES
from pidcore.probes.prompt import human_turn, user_text
from pidcore.store import (SampleRow, load_samples, read_evaluated_ids, read_progress, read_run, read_runs,
                           read_sample_images)

logger = logging.getLogger(__name__)
PAPER_WIDTH = 4
IMAGE_TAG = "\n<image>"
PAPER_ORDER = ("image_only", "text_only", "full")  # the paper's files list v, l, vl
# The folder each of the store's splits is written to (PAPER_SPLITS reversed).
FOLDERS = {store: folder for folder, store in PAPER_SPLITS.items()}


class ExportError(ValueError):
    """A run cannot be exported: it is not in the database, a layer or estimator is not stored, or a file exists."""


@dataclass
class Exported:
    """What export_stage2 wrote: the run, the layer and estimator read, the files with their record counts, the
    padded width, how the split was decided, and the samples written that our estimate left out."""

    model: str
    task: str
    checkpoint: str
    run_id: str
    layer: int
    n_layers: int
    estimator: str
    fallback: str
    width: int
    split: str
    files: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    left_out: int = 0


def export_stage2(db: str | Path, model: str, task: str, out: str | Path, layer: int | None = None,
                  checkpoint: str | None = None, estimator: str | None = None, force: bool = False) -> Exported:
    """Write the run of (model, task, checkpoint) as `out/train/<model>.json` and `out/val/<model>.json`.

    checkpoint: default "final" where the run has one, else the only checkpoint, else the one of the largest step.
    layer: default the output (n_layers). estimator: whose rows decide the fallback and, for a run without a fixed
    split, the evaluated samples (default: batch-published where present, else the first by name).
    An existing non-empty file is refused unless `force`. Every refusal is an ExportError naming what exists.
    """
    run = _find_run(db, model, task, checkpoint)
    run_id, n_layers = str(run["run_id"]), int(run["n_layers"])
    label = f"{run['model']} on {run['task']} ({run['checkpoint']})"
    rows = load_samples(db, run_id)
    if not rows:
        raise ExportError(f"{label} has no stored probe samples to export (run {run_id})")
    layers_by_estimator = read_progress(db, [run_id])[run_id].layers
    estimator = _pick(layers_by_estimator, estimator, label)
    layer = n_layers if layer is None else layer
    first = n_layers + 1 - min(_probs(row).shape[1] for row in rows)
    if not first <= layer <= n_layers:
        raise ExportError(f"layer {layer} is not stored for {label}; its probes are stored for layers "
                          f"{first}..{n_layers}")
    settings = read_run(db, run_id)["settings"]
    upstream = bool(settings.get("fallback_upstream"))
    fallback = "upstream" if upstream else "applied" if applies_fallback(estimator) else "no"
    splits, how, left_out = _splits(db, run_id, label, rows, layer, estimator, layers_by_estimator[estimator],
                                    int(settings.get("seed") or 0))
    files = _targets(Path(out), model, force)
    width = _width(rows)
    images = read_sample_images(db, run_id)
    exported = Exported(str(run["model"]), str(run["task"]), str(run["checkpoint"]), run_id, layer, n_layers,
                        estimator, fallback, width, how, left_out=left_out)
    records = {folder: [_record(row, layer, n_layers, width, fallback == "applied", images.get(row.sample_id))
                        for row in splits[folder]] for folder in PAPER_SPLITS}
    for folder, path in files.items():
        _write_json(path, records[folder])
        exported.files[folder] = path
        exported.counts[folder] = len(records[folder])
    return exported


def _find_run(db: str | Path, model: str, task: str, checkpoint: str | None) -> pd.Series:
    """The run the `atoms` view shows for (model, task, checkpoint): the newest registered; errors name what
    exists."""
    runs = read_runs(db)
    if runs.empty:
        raise ExportError(f"{db} holds no runs")
    mine = runs[runs["model"] == model]
    if mine.empty:
        raise ExportError(f"no model {model!r} in {db}; its models: {_names(runs['model'])}")
    on_task = mine[mine["task"] == task]
    if on_task.empty:
        raise ExportError(f"{model} has no run on task {task!r} in {db}; its tasks: {_names(mine['task'])}; its "
                          f"checkpoints: {_checkpoints(mine)}")
    checkpoint = _default_checkpoint(on_task) if checkpoint is None else checkpoint
    chosen = on_task[on_task["checkpoint"] == checkpoint]
    if chosen.empty:
        raise ExportError(f"{model} on {task} has no checkpoint {checkpoint!r} in {db}; its checkpoints: "
                          f"{_checkpoints(on_task)}")
    return chosen.iloc[-1]  # read_runs orders by creation: the last is the newest, the one the atoms view shows


def _default_checkpoint(runs: pd.DataFrame) -> str:
    """"final" where present, else the only checkpoint, else the one of the largest step; else an error."""
    names = list(dict.fromkeys(runs["checkpoint"]))
    if "final" in names or len(names) == 1:
        return "final" if "final" in names else names[0]
    stepped = runs.dropna(subset=["step"])
    if stepped.empty:
        raise ExportError(f"give --checkpoint: the run has several checkpoints without steps: {_checkpoints(runs)}")
    return str(stepped.sort_values("step", kind="stable")["checkpoint"].iloc[-1])


def _names(values) -> str:
    return ", ".join(sorted({str(value) for value in values}))


def _checkpoints(runs: pd.DataFrame) -> str:
    """The checkpoints of some runs, in training order where their steps are known, else by name."""
    ordered = runs.assign(known=runs["step"].isna()).sort_values(["known", "step", "checkpoint"], kind="stable")
    return ", ".join(dict.fromkeys(str(name) for name in ordered["checkpoint"]))


def _pick(layers_by_estimator: dict[str, set[int]], wanted: str | None, label: str) -> str:
    """The estimator whose rows to follow; an error naming the run's estimators when it has none or not that one."""
    available = sorted(layers_by_estimator)
    if not available:
        raise ExportError(f"{label} has no estimator's rows; estimate its atoms first")
    if wanted is not None and wanted not in available:
        raise ExportError(f"{label} has no rows of estimator {wanted!r}; it has {', '.join(available)}")
    return pick_estimator(available, wanted)


def _targets(out: Path, model: str, force: bool) -> dict[str, Path]:
    """The two files to write; an existing non-empty one is refused (both are checked before either is written)."""
    stem = model.replace("/", "_").replace("\\", "_")
    if stem in ("", ".", ".."):
        raise ExportError(f"model name {model!r} cannot name a file")
    files = {folder: out / folder / f"{stem}.json" for folder in PAPER_SPLITS}
    taken = [str(path) for path in files.values() if path.exists() and (not path.is_file() or path.stat().st_size)]
    if taken and not force:
        raise ExportError(f"not overwriting {' and '.join(taken)}; give --force to replace")
    return files


def _probs(row: SampleRow) -> np.ndarray:
    """A sample's letter distributions [pass, stored layer, k]."""
    return row.probs if row.probs.ndim == 3 else row.probs[:, None, :]


def _mass(row: SampleRow, stored: int) -> np.ndarray:
    """A sample's letter mass [pass, stored layer]; older databases hold the output layer's only (NaN elsewhere)."""
    if row.letter_mass.ndim == 2:
        return row.letter_mass.astype(np.float64)
    mass = np.full((len(PASSES), stored), np.nan)
    mass[:, -1] = row.letter_mass
    return mass


def _splits(db: str | Path, run_id: str, label: str, rows: list[SampleRow], layer: int, estimator: str,
            estimated: set[int], seed: int) -> tuple[dict[str, list[SampleRow]], str, int]:
    """The rows of train and val, in the order to write them, how the split was decided, and how many written
    samples our estimate left out (another option count than the most common)."""
    k = Counter(row.n_options for row in rows).most_common(1)[0][0]  # as layers.load_run_samples chooses
    kept = [row for row in rows if row.n_options == k]
    left_out = len(rows) - len(kept)
    if any(row.split is not None for row in rows):
        unknown = sorted({str(row.split) for row in rows} - set(FOLDERS))
        if unknown:
            raise ExportError(f"{label} has samples of split {', '.join(unknown)}; only fit and evaluation "
                              "map to the paper's train and val")
        fixed = {FOLDERS[split]: [row for row in rows if row.split == split] for split in FOLDERS}
        empty = [folder for folder, found in fixed.items() if not found]
        if empty:
            raise ExportError(f"{label} fixes a split without {' or '.join(empty)} samples; the paper's layout needs "
                              "both")
        return fixed, "fixed by the run", left_out
    if layer not in estimated:
        raise ExportError(f"{label} has no rows of {estimator} at layer {layer}, so its evaluated samples are "
                          f"unknown; it has layers {_ranges(estimated)}")
    held = set(read_evaluated_ids(db, run_id, layer, estimator))
    if not held:
        raise ExportError(f"{label} kept no per-sample rows of {estimator} at layer {layer}, so its evaluated "
                          "samples are unknown")
    val = [row for row in rows if row.sample_id in held]
    fit, order = _fitting_order(kept, held, seed)
    rest = [row for row in rows if row.sample_id not in held and row.n_options != k]
    how = ("the estimator's seeded split, in its fitting order" if order else
           "the estimator's evaluated samples; the fitting order could not be reproduced, so dataset order")
    if not order:
        logger.warning("%s: the seeded split of seed %d does not give its evaluated samples; train is written in "
                       "dataset order, so an import fits in another order", label, seed)
    return {"train": fit + rest, "val": val}, how, left_out


def _fitting_order(kept: list[SampleRow], held: set[str], seed: int) -> tuple[list[SampleRow], bool]:
    """The samples BATCH fitted on, in the order it took them: a seeded split (estimators/batch.py `seeded_split`)
    holds out the first part of torch.randperm(n, seed) and fits on the rest in permutation order. Whether the
    permutation reproduces the evaluated samples; if not, the fitting samples in dataset order."""
    order = torch.randperm(len(kept), generator=torch.Generator().manual_seed(seed)).tolist()
    first = {kept[index].sample_id for index in order[:len(held)]}
    if first == held:
        return [kept[index] for index in order[len(held):]], True
    return [row for row in kept if row.sample_id not in held], False


def _ranges(layers: set[int]) -> str:
    return ", ".join(str(layer) for layer in sorted(layers)) or "none"


def _width(rows: list[SampleRow]) -> int:
    """The paper's padded width: 2 when every sample has 2 options, else 4, or the most options where above 4."""
    counts = {row.n_options for row in rows}
    return 2 if counts == {2} else max(PAPER_WIDTH, *counts)


def _record(row: SampleRow, layer: int, n_layers: int, width: int, fallback: bool, image: bytes | None) -> dict:
    """One sample as a record of the paper's stage-2 layout, at one layer."""
    probs = _probs(row)
    index = layer - (n_layers + 1 - probs.shape[1])
    letters = probs[:, index].astype(np.float64)
    mass = _mass(row, probs.shape[1])[:, index]
    shown = with_fallback(letters[None], mass[None], LETTER_MASS_FALLBACK)[0][0] if fallback else letters
    n = row.n_options
    names = option_letters(n)
    gpt: dict = {"from": "gpt", "value": names[int(np.argmax(letters[0]))]}
    if row.gold is not None:
        gpt["label"] = names[row.gold]
    gpt["v_feature"] = _floats(row.x1)
    gpt["l_feature"] = _floats(row.x2)
    for name in PAPER_ORDER:
        gpt[f"{CONVERSATION_PROBES[name]}_prob"] = _padded(shown[PASSES.index(name)], width)
    for name in PAPER_ORDER:
        at = PASSES.index(name)
        if np.isfinite(mass[at]):
            gpt[f"{CONVERSATION_PROBES[name]}_orig_prob"] = _padded(letters[at] * mass[at], width)
    return {"id": _paper_id(row), "image": None if image is None else base64.b64encode(image).decode("ascii"),
            "num_options": n, "conversations": [{"from": "human", "value": _human(row)}, gpt]}


def _human(row: SampleRow) -> str | None:
    """The human turn as the paper's files hold it: the prompt text, then "\\n<image>", which its scripts remove
    (`value.replace("\\n<image>", "")`) to get the text they give the model; None without a stored question."""
    if row.question is None:
        return None
    return f"{human_turn(user_text(row.question, row.options or []))}{IMAGE_TAG}"


def _paper_id(row: SampleRow) -> str:
    """The sample's id, without the split prefix import-paper gives the records of a folder (train:, val:)."""
    prefix = f"{FOLDERS.get(row.split, '')}:"
    return row.sample_id[len(prefix):] if row.split in FOLDERS and row.sample_id.startswith(prefix) else row.sample_id


def _floats(values: np.ndarray) -> list[float]:
    return [float(value) for value in np.asarray(values).ravel()]


def _padded(values: np.ndarray, width: int) -> list[float]:
    return _floats(values) + [0.0] * (width - len(values))


def _write_json(path: Path, records: list[dict]) -> None:
    """Write the records whole or not at all: into a temporary file beside the target, then renamed onto it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(records, file, allow_nan=False)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
