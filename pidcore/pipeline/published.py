"""`paper build`: the paper's published atoms (data/reference/paper/*.csv, read off its figures) as a results
database in the same schema as our own runs, so every page can show them and compare with them.

- atoms.csv: 26 models x 4 datasets at the output layer, with accuracy: checkpoint "final" of each model;
- layers.csv: logit-lens curves of 4 models (layers 1..n_layers) on MMBench and PMC-VQA: the layers of that
  same "final" checkpoint. Its last layer is the output, which atoms.csv also reads (from another, more precise
  figure): the store keeps atoms.csv's value there and the curve's own reading in that row's diagnostics;
- training.csv: LLaVA-1.5-7B and -13B, 4 checkpoints per stage, at the output layer: checkpoints named
  "stage{S}-{i}" whose step is their index over both stages (1..8); the paper gives no step numbers.

A blank cell is an atom the figure does not show: it is stored as NULL, never as 0. The depth of the 22 models
without a layer curve is not given by the paper: their output row has NULL layer and n_layers. A row that does
not parse is skipped whole, counted and named.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from pidcore.atoms import ATOMS, PAPER_ESTIMATOR
from pidcore.store import write_published

logger = logging.getLogger(__name__)

FINAL = "final"
FILES = ("atoms.csv", "layers.csv", "training.csv")
CITATION = "Xiu, Luo and Nakayama, ICLR 2026 (arXiv 2603.29676), digitized from its figures"
PRECISION = {"atoms.csv": "about +-0.005 bits; segments under about 0.003 bits read as 0",
             "layers.csv": "about +-0.03 bits and +-1 layer",
             "training.csv": "about +-0.02 bits; checkpoints evenly spaced within each stage"}


class PublishedDataError(ValueError):
    """The reference folder lacks a file, or a file lacks the columns it needs."""


@dataclass
class Reading:
    """What the CSVs hold, ready for the store: runs and their layer rows, and the rows skipped with reasons."""

    runs: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    layers: dict[tuple[str, str, str, int | None], dict] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def build_paper_db(folder: str | Path, db: str | Path) -> Reading:
    """Read the reference CSVs and write them to `db`, replacing it only once the whole build succeeded."""
    reading = read_reference(Path(folder))
    db = Path(db)
    building = db.with_name(db.name + ".building")
    building.unlink(missing_ok=True)
    write_published(building, list(reading.runs.values()), list(reading.layers.values()))
    os.replace(building, db)
    logger.info("%s: %d runs, %d rows; %d source rows skipped", db.name, len(reading.runs), len(reading.layers),
                len(reading.skipped))
    return reading


def read_reference(folder: Path) -> Reading:
    """The runs and layer rows of the three CSVs; a bad row is skipped with its file, line and reason."""
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise PublishedDataError(f"{folder} lacks {', '.join(missing)} (the paper's reference CSVs)")
    digest = hashlib.sha1(b"".join((folder / name).read_bytes() for name in FILES)).hexdigest()[:12]
    reading = Reading()
    curves = list(_rows(folder / "layers.csv", ("model", "dataset", "layer", "n_layers"), reading))
    depths = _depths(curves)
    families = {}
    for line, row in _rows(folder / "atoms.csv", ("model", "family", "dataset", "accuracy"), reading):
        families[row["model"]] = row["family"]
        _add(reading, digest, "atoms.csv", line, row, FINAL, None, None, depths.get(row["model"]), None)
    for line, row in curves:
        _add(reading, digest, "layers.csv", line, row, FINAL, None, None, depths.get(row["model"]), row["layer"])
    _add_training(folder / "training.csv", reading, digest, depths)
    for run in reading.runs.values():
        run["family"] = families.get(run["model"], "unknown")
    return reading


def _depths(curves: list[tuple[int, dict]]) -> dict[str, int]:
    """Each model's depth, from its layer curves (rows whose n_layers does not parse are reported later)."""
    depths = {}
    for _, row in curves:
        if row["n_layers"].strip().isdigit():
            depths.setdefault(row["model"], int(row["n_layers"]))
    return depths


def _rows(path: Path, required: tuple[str, ...], reading: Reading):
    """(line number, row) of a CSV whose header names the required columns and the four atoms."""
    with path.open(newline="") as handle:
        rows = csv.DictReader(handle)
        absent = [name for name in (*required, *ATOMS, "source") if name not in (rows.fieldnames or [])]
        if absent:
            raise PublishedDataError(f"{path.name} lacks the columns {absent}")
        for line, row in enumerate(rows, start=2):
            if not all(row[name] for name in required if name != "accuracy"):
                reading.skipped.append((f"{path.name}:{line}", f"a blank {', '.join(required)} cell"))
                continue
            yield line, row


def _add_training(path: Path, reading: Reading, digest: str, depths: dict[str, int]) -> None:
    """training.csv's checkpoints, numbered 1.. over both stages in order, at the model's output layer."""
    rows = list(_rows(path, ("model", "dataset", "stage", "index_in_stage"), reading))
    try:
        order = sorted({(int(row["stage"]), int(row["index_in_stage"])) for _, row in rows})
    except ValueError as error:
        raise PublishedDataError(f"{path.name}: a stage or index_in_stage is not a whole number ({error})") from error
    steps = {key: index for index, key in enumerate(order, start=1)}
    for line, row in rows:
        stage, index = int(row["stage"]), int(row["index_in_stage"])
        depth = depths.get(row["model"])
        _add(reading, digest, "training.csv", line, row, f"stage{stage}-{index}", steps[(stage, index)], str(stage),
             depth, None)


def _add(reading: Reading, digest: str, source: str, line: int, row: dict, checkpoint: str, step: int | None,
         stage: str | None, n_layers: int | None, layer_text: str | None) -> None:
    """One layer row (and its run, once): parsed whole, or skipped with its reason. `layer_text` None: the
    output layer (layer = n_layers, NULL when the depth is unknown)."""
    where = f"{source}:{line}"
    try:
        atoms = {name: _number(row[name], name) for name in ATOMS}
        accuracy = _number(row.get("accuracy", ""), "accuracy")
        layer = n_layers if layer_text is None else _whole(layer_text, "layer")
        if layer_text is not None and (n_layers is None or _whole(row["n_layers"], "n_layers") != n_layers):
            raise ValueError(f"n_layers {row['n_layers']!r} disagrees with the model's depth {n_layers}")
        if layer is not None and not 1 <= layer <= n_layers:
            raise ValueError(f"layer {layer} is outside 1..{n_layers}")
    except ValueError as error:
        reading.skipped.append((where, str(error)))
        return
    model, task = row["model"], row["dataset"]
    run_key = (model, task, checkpoint)
    run_id = hashlib.sha1(f"paper:{digest}:{model}:{task}:{checkpoint}".encode()).hexdigest()[:16]
    reading.runs.setdefault(run_key, {"run_id": run_id, "model": model, "task": task, "checkpoint": checkpoint,
                                      "step": step, "stage": stage, "n_layers": n_layers,
                                      "settings": {"source": CITATION, "reference_digest": digest}})
    diagnostics = {"mode": PAPER_ESTIMATOR, "source": row["source"], "read_from": where,
                   "precision": PRECISION[source]}
    key = (*run_key, layer)
    if key in reading.layers:
        # atoms.csv reads the output layer more precisely than the layer curve: keep it, note the curve's reading
        reading.layers[key]["diagnostics"]["also_read"] = {"from": where, **atoms}
        return
    reading.layers[key] = {"run_id": run_id, "layer": layer, "estimator": PAPER_ESTIMATOR, **atoms,
                           "accuracy": accuracy, "diagnostics": diagnostics}


def _number(text: str | None, name: str) -> float | None:
    """A cell as a finite float; a blank cell is None (the figure does not show it)."""
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} {text!r} is not finite")
    return value


def _whole(text: str, name: str) -> int:
    """A cell as a whole number (a layer or a depth)."""
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a whole number") from None
