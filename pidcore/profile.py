"""`profile`: one model x one dataset -> probe outputs for every sample, then atoms for every layer, resumably."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from pidcore.datasets import LoadedDataset, load_dataset
from pidcore.estimators import batch_pid
from pidcore.models.loading import LoadedVLM, load_vlm
from pidcore.probes.encoding import encode_sample
from pidcore.probes.engine import EmbeddingStats, embedding_stats, run_probes, run_probes_batch
from pidcore.store import blob_to_array
from pidcore.store_writer import array_to_blob, ensure_schema, insert_rows, read_unit, settings_json, write_unit

logger = logging.getLogger("pidcore.profile")
ATOMS = ("r", "u1", "u2", "s")


@dataclass
class ProfileSettings:
    """Everything a profile run depends on; the run id hashes the fields that change results.

    keep_fitted: store each layer's fitted estimator (about 50 kB), needed to score new samples later.
    progress: show tqdm bars (off when a caller shows its own).
    """

    model: str
    dataset: str
    db: str
    layers: str = "all"
    device: str = "auto"
    dtype: str = "auto"
    limit: int | None = None
    seed: int = 0
    estimator_mode: str = "published"
    checkpoint: str = "final"
    step: int | None = None
    stage: str | None = None
    calibration_samples: int = 32
    chunk: int = 8
    trust_remote_code: bool = False
    task: str | None = None
    keep_fitted: bool = True
    progress: bool = True

    def run_id(self) -> str:
        keys = ("model", "dataset", "dtype", "limit", "seed", "checkpoint", "calibration_samples")
        return hashlib.sha1(settings_json({k: getattr(self, k) for k in keys}).encode()).hexdigest()[:16]

    @property
    def estimator(self) -> str:
        return f"batch-{self.estimator_mode}"

    @property
    def task_name(self) -> str:
        """The task as shown in the store: the explicit name, else KIND:FILENAME of the dataset spec."""
        return self.task or self.dataset.split(":", 1)[0] + ":" + self.dataset.rsplit("/", 1)[-1]

    @property
    def model_name(self) -> str:
        """The model as shown in the store: the last part of its hub id or folder."""
        return self.model.rstrip("/").rsplit("/", 1)[-1]


def profile(settings: ProfileSettings) -> list[dict]:
    """Probe every sample, then estimate atoms per layer; returns the atoms of the last layer."""
    dataset = load_dataset(settings.dataset, limit=settings.limit)
    vlm = load_vlm(settings.model, settings.device, settings.dtype, settings.trust_remote_code)
    run_id = settings.run_id()
    ensure_schema(settings.db)
    stats = _calibration(settings, vlm, dataset, run_id)
    _probe_samples(settings, vlm, dataset, stats, run_id)
    return estimate_layers(settings, run_id)


def register_run(settings: ProfileSettings, family: str, run_id: str, n_layers: int) -> None:
    """Insert the run's row (once): its names, checkpoint, depth and full settings."""
    with write_unit(settings.db) as db:
        db.execute("INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, epoch(now()))",
                   [run_id, settings.model_name, family, settings.task_name, settings.checkpoint, settings.step,
                    settings.stage, n_layers, json.dumps(asdict(settings))])


def _calibration(settings: ProfileSettings, vlm: LoadedVLM, dataset: LoadedDataset, run_id: str) -> EmbeddingStats:
    """Embedding statistics of the first calibration samples, computed once per run and stored with it."""
    stored = read_unit(settings.db, "SELECT stats FROM calibration WHERE run_id = ?", [run_id])
    if stored:
        return EmbeddingStats(*(torch.from_numpy(a) for a in blob_to_array(stored[0][0])))
    encoded = [encode_sample(vlm, s.image, s.question, s.options, s.hint)
               for s in dataset.samples[: settings.calibration_samples]]
    stats = embedding_stats(vlm, encoded)
    first = run_probes(vlm, encoded[0], stats, seed=settings.seed)
    register_run(settings, vlm.adapter.family, run_id, first.probs.shape[1] - 1)
    blob = array_to_blob(np.stack([stats.image_mean, stats.image_std, stats.text_mean, stats.text_std]))
    with write_unit(settings.db) as db:
        db.execute("INSERT OR IGNORE INTO calibration VALUES (?, ?)", [run_id, blob])
    return stats


def _probe_samples(settings, vlm, dataset: LoadedDataset, stats: EmbeddingStats, run_id: str) -> None:
    """Probe every sample not yet stored, a chunk per forward where shapes allow, a chunk per short write."""
    done = {row[0] for row in read_unit(settings.db, "SELECT sample_id FROM samples WHERE run_id = ?", [run_id])}
    todo = [(i, s) for i, s in enumerate(dataset.samples) if s.id not in done]
    with tqdm(desc="probing", unit="sample", initial=len(done), total=len(dataset.samples),
              disable=not settings.progress) as bar:
        for start in range(0, len(todo), settings.chunk):
            chunk = todo[start:start + settings.chunk]
            encoded = [encode_sample(vlm, s.image, s.question, s.options, s.hint) for _, s in chunk]
            results = _probe_chunk(vlm, encoded, stats, [settings.seed * 1_000_003 + i for i, _ in chunk])
            write_samples(settings.db, [_sample_row(run_id, position, sample, result)
                                        for (position, sample), result in zip(chunk, results)])
            bar.update(len(chunk))


def _probe_chunk(vlm, encoded: list, stats: EmbeddingStats, seeds: list[int]) -> list:
    """Run samples with identical input shapes together; results come back in input order."""
    groups: dict[tuple, list[int]] = {}
    for index, item in enumerate(encoded):
        key = tuple((name, tuple(value.shape)) for name, value in item.inputs.items())
        groups.setdefault(key, []).append(index)
    results = [None] * len(encoded)
    for members in groups.values():
        outputs = run_probes_batch(vlm, [encoded[i] for i in members], stats, [seeds[i] for i in members])
        for index, output in zip(members, outputs):
            results[index] = output
    return results


def _sample_row(run_id: str, position: int, sample, result) -> list:
    gold = sample.letters.index(sample.answer) if sample.answer else None
    return sample_row(run_id, sample.id, position, gold, result.x1.numpy(), result.x2.numpy(), result.probs.numpy(),
                      result.letter_mass.numpy())


def sample_row(run_id: str, sample_id: str, position: int, gold: int | None, x1: np.ndarray, x2: np.ndarray,
               probs: np.ndarray, letter_mass: np.ndarray) -> list:
    """One `samples` row; probs is [pass, stored layers, k] and holds the run's last layers."""
    return [run_id, sample_id, position, gold, probs.shape[-1], array_to_blob(x1), array_to_blob(x2),
            array_to_blob(probs), array_to_blob(letter_mass)]


def write_samples(db: str, rows: list[list]) -> None:
    """Insert sample rows in one short transaction; rows already stored are kept as they are."""
    with write_unit(db) as connection:
        insert_rows(connection, "samples", rows)


def _load_samples(db: str, run_id: str):
    """Features, probe outputs and gold answers of a run, for the most common option count."""
    rows = read_unit(db, "SELECT sample_id, gold, n_options, x1, x2, probs FROM samples WHERE run_id = ? "
                         "ORDER BY position", [run_id])
    k = Counter(row[2] for row in rows).most_common(1)[0][0]
    kept = [row for row in rows if row[2] == k]
    if len(kept) < len(rows):
        logger.warning("estimating on the %d samples with %d options; %d others left out", len(kept), k,
                       len(rows) - len(kept))
    ids = [row[0] for row in kept]
    gold = np.array([-1 if row[1] is None else row[1] for row in kept])
    x1 = np.stack([blob_to_array(row[3]) for row in kept])
    x2 = np.stack([blob_to_array(row[4]) for row in kept])
    probs = np.stack([blob_to_array(row[5]) for row in kept]).astype(np.float64)
    return ids, gold, x1, x2, probs


def _selected_layers(spec: str, n_layers: int) -> list[int]:
    """"all", "last", or a comma list of layer numbers (0 = embeddings, n_layers = the real output)."""
    if spec == "all":
        return list(range(n_layers + 1))
    if spec == "last":
        return [n_layers]
    layers = sorted({int(part) for part in spec.split(",")})
    bad = [layer for layer in layers if not 0 <= layer <= n_layers]
    if bad:
        raise ValueError(f"layers {bad} are outside 0..{n_layers}")
    return layers


def estimate_layers(settings: ProfileSettings, run_id: str) -> list[dict]:
    """Fit BATCH per layer not yet stored; store dataset atoms, pointwise atoms and the fitted estimator.

    Stored probe outputs cover the run's last layers (all of them for `profile`, only the output for an
    imported run), so layer l sits at index l - first stored layer.
    """
    n_layers = read_unit(settings.db, "SELECT n_layers FROM runs WHERE run_id = ?", [run_id])[0][0]
    ids, gold, x1, x2, probs = _load_samples(settings.db, run_id)
    first_stored = n_layers + 1 - probs.shape[2]
    done = {row[0] for row in read_unit(settings.db, "SELECT layer FROM layer_atoms WHERE run_id = ? AND "
                                        "estimator = ?", [run_id, settings.estimator])}
    selected = _selected_layers(settings.layers, n_layers)
    unavailable = [layer for layer in selected if layer < first_stored]
    if unavailable and settings.layers != "all":
        raise ValueError(f"layers {unavailable} were not stored for this run; only {first_stored}..{n_layers} were")
    layers = [layer for layer in selected if layer >= first_stored and layer not in done]
    for layer in tqdm(layers, desc="estimating", unit="layer", disable=not settings.progress):
        index = layer - first_stored
        full, image_only, text_only = probs[:, 0, index], probs[:, 1, index], probs[:, 2, index]
        result = batch_pid(x1, x2, image_only, text_only, full, mode=settings.estimator_mode,
                           device=settings.device, seed=settings.seed)
        _write_layer(settings, run_id, layer, ids, gold, full, result)
    rows = read_unit(settings.db, "SELECT layer, r, u1, u2, s, accuracy FROM layer_atoms WHERE run_id = ? AND "
                                  "estimator = ? AND layer = ?", [run_id, settings.estimator, n_layers])
    return [dict(zip(("layer", "r", "u1", "u2", "s", "accuracy"), row)) for row in rows]


def _write_layer(settings, run_id, layer, ids, gold, full, result) -> None:
    has_gold = gold >= 0
    accuracy = float((full.argmax(1)[has_gold] == gold[has_gold]).mean()) if has_gold.any() else None
    diagnostics = {k: v for k, v in result.diagnostics.items() if k != "objective_curve"}
    held = result.held_out_index.tolist()
    pointwise = [[run_id, layer, settings.estimator, ids[i], *(float(result.pointwise[a][j]) for a in ATOMS)]
                 for j, i in enumerate(held)]
    with write_unit(settings.db) as db:
        db.execute("INSERT OR IGNORE INTO layer_atoms VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [run_id, layer, settings.estimator, result.atoms["r"], result.atoms["u1"], result.atoms["u2"],
                    result.atoms["s"], len(held), accuracy, json.dumps(diagnostics, default=str),
                    result.estimator.to_bytes() if settings.keep_fitted else None])
        insert_rows(db, "pointwise_atoms", pointwise)
