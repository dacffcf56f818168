"""Stage-2 files in the paper pipeline's own layout, written from arrays, for the import tests and for running the
paper's stage-3 code on exactly the inputs our tests import (the numbers it printed are in paper_oracle.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pidcore.atoms import LETTERS
from pidcore.store import load_samples, read_runs
from tests.gates import planted_splits

ORACLE = Path(__file__).parent / "paper_oracle.json"


def oracle_numbers() -> dict:
    """What the paper's stage-3 code printed (R, U1, U2, S in bits, clipped at 0) on each fixture, and how it ran."""
    return json.loads(ORACLE.read_text())


def conversation_records(x1, x2, p1, p2, p12, num_options=None, width=None, labels=None, prefix="s") -> list[dict]:
    """Records `{"id", "image", "num_options", "conversations": [human, gpt]}`; each sample's probabilities (over
    its own options) zero-padded to `width`; the label is the given letter, else the full pass's top option."""
    width = width or max(len(probs) for probs in p12)
    records = []
    for i in range(len(x1)):
        n = len(p12[i]) if num_options is None else int(num_options[i])
        answer = LETTERS[int(np.argmax(p12[i]))]
        gpt = {"from": "gpt", "value": answer, "label": answer if labels is None else labels[i],
               "v_feature": _floats(x1[i]), "l_feature": _floats(x2[i]), "v_prob": _padded(p1[i], width),
               "l_prob": _padded(p2[i], width), "vl_prob": _padded(p12[i], width)}
        records.append({"id": f"{prefix}{i}", "image": f"{prefix}{i}.png", "num_options": n,
                        "conversations": [{"from": "human", "value": "<image>\nWhich option?"}, gpt]})
    return records


def _floats(values) -> list[float]:
    return [float(value) for value in values]


def _padded(probs, width: int) -> list[float]:
    return _floats(probs) + [0.0] * (width - len(probs))


FIELDS = ("v_feature", "l_feature", "v_prob", "l_prob", "vl_prob")


def inputs_fingerprint(folder: Path, model: str) -> list[float]:
    """What identifies a stage-2 folder's inputs for one model, robust to last-bit differences between BLAS builds
    (a byte digest is not: the planted features come out of a QR decomposition): per split, the record count and,
    per field, the sum and the position-weighted sum of its values. The oracle's numbers hold for these inputs."""
    fingerprint = []
    for split in ("train", "val"):
        records = json.loads((folder / split / f"{model}.json").read_text())
        turns = [turn for record in records for turn in record["conversations"] if turn["from"] == "gpt"]
        fingerprint.append(float(len(turns)))
        for name in FIELDS:
            values = np.array([turn[name] for turn in turns], dtype=np.float64)
            weights = np.arange(1, values.size + 1, dtype=np.float64).reshape(values.shape) / values.size
            fingerprint += [float(values.sum()), float((values * weights).sum())]
    return fingerprint


def same_inputs(ours: list[float], oracle: list[float]) -> bool:
    """Whether two fingerprints describe the same inputs, up to float rounding."""
    return len(ours) == len(oracle) and bool(np.allclose(ours, oracle, rtol=1e-11, atol=1e-11))


def write_folder(folder: Path, model: str, train: list[dict], val: list[dict]) -> Path:
    """A stage-2 folder: folder/train/MODEL.json and folder/val/MODEL.json."""
    for split, records in (("train", train), ("val", val)):
        (folder / split).mkdir(parents=True, exist_ok=True)
        (folder / split / f"{model}.json").write_text(json.dumps(records))
    return folder


def planted_folder(folder: Path, gate: str) -> Path:
    """The planted gate's splits of tests.gates (2,048 fit, 2,048 held out) as a stage-2 folder, model = gate."""
    _, fit, held = planted_splits(gate)
    return write_folder(folder, gate, conversation_records(*fit, prefix="t"), conversation_records(*held, prefix="v"))


def zoo_folder(folder: Path, db: Path, model: str, task: str, n_fit: int = 96) -> Path:
    """A zoo model's output-layer probe outputs on one task (final checkpoint) as a stage-2 folder: the first
    n_fit samples in dataset order are train, the rest val."""
    runs = read_runs(db)
    runs = runs[(runs["model"] == model) & (runs["task"] == task)].sort_values("step")
    samples = load_samples(db, runs["run_id"].iloc[-1])
    arrays = [np.stack(values) for values in zip(*((s.x1, s.x2, s.probs[1, -1], s.probs[2, -1], s.probs[0, -1])
                                                   for s in samples))]
    labels = [LETTERS[s.gold] for s in samples]
    train = conversation_records(*(a[:n_fit] for a in arrays), labels=labels[:n_fit], prefix="t")
    val = conversation_records(*(a[n_fit:] for a in arrays), labels=labels[n_fit:], prefix="v")
    return write_folder(folder, f"{model}-{task}", train, val)
