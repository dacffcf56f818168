"""`profile`: one model x one dataset -> probe outputs for every sample, then atoms for every layer, resumably."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace

import numpy as np
import torch
from tqdm import tqdm

from pidcore.datasets import LoadedDataset, Sample, load_dataset
from pidcore.datasets.fingerprint import dataset_fingerprint
from pidcore.models.identity import identity_key, model_identity
from pidcore.models.loading import LoadedVLM, load_vlm
from pidcore.pipeline.attach import gold_index, sample_text
from pidcore.pipeline.layers import estimate_layers
from pidcore.pipeline.settings import ProfileSettings
from pidcore.probes.encoding import Encoded, encode_sample
from pidcore.probes.engine import (
    EmbeddingStats,
    ProbeResult,
    embedding_stats,
    length_groups,
    run_probes,
    run_probes_batch,
)
from pidcore.store import (
    LayerResult,
    SampleRow,
    ensure_schema,
    load_calibration,
    read_runs,
    register_run,
    stored_sample_ids,
    write_calibration,
    write_samples,
)

logger = logging.getLogger(__name__)

# Forwards' worth of samples encoded together and sorted by length, so each forward pads little (128 samples at the
# default batch size: their encodings are held at once).
LENGTH_WINDOW = 16


def profile(settings: ProfileSettings, vlm: LoadedVLM | None = None) -> list[LayerResult]:
    """Probe every sample, then estimate atoms per layer; returns the output layer's result. The same model and
    dataset content with the same settings resume the stored run; anything else is a new run. The dataset and the
    database are checked before the model loads, so a bad path fails in seconds, not after a 7B model loads.
    `vlm`: the model, loaded already (a sweep reuses one across its datasets)."""
    settings, run_id = probe_run(settings, vlm)
    return estimate_layers(settings, run_id)


def probe_run(settings: ProfileSettings, vlm: LoadedVLM | None = None) -> tuple[ProfileSettings, str]:
    """Store every sample's probe outputs (the part of `profile` that needs the model); returns the settings with
    the identities resolved, and the run id."""
    dataset = load_dataset(settings.dataset, limit=settings.limit, dedupe=settings.dedupe)
    ensure_schema(settings.db)
    vlm = vlm or load_vlm(settings.model, settings.device, settings.dtype, settings.trust_remote_code,
                          settings.revision, spread=settings.spread)
    settings = resolved_identities(settings, dataset)
    run_id = settings.run_id()
    stats, encoded = _calibration(settings, vlm, dataset, run_id)
    _probe_samples(settings, vlm, dataset, stats, run_id, encoded)
    return settings, run_id


def resolved_identities(settings: ProfileSettings, dataset: LoadedDataset) -> ProfileSettings:
    """The settings with what the model and dataset resolve to here. Identities given already (a sweep's plan)
    must match what is found here, so a worker never stores rows under a plan made from other files; a planned
    model identity without a weights fingerprint (a hub id the planner had no copy of) is kept as planned."""
    model = identity_key(model_identity(settings.model, settings.revision))
    content = dataset_fingerprint(dataset)
    if settings.dataset_identity not in (None, content):
        raise ValueError(f"dataset {settings.dataset} holds other samples than when the sweep was planned "
                         f"(fingerprint {content}, planned {settings.dataset_identity}); plan the sweep again")
    planned = settings.model_identity
    if planned is not None and planned != model and json.loads(planned).get("weights"):
        raise ValueError(f"model {settings.model} here is not the one the sweep was planned with ({model}, planned "
                         f"{planned}); give every worker the same files, or plan the sweep again")
    return replace(settings, model_identity=planned or model, dataset_identity=content)


def _warn_if_superseding(settings: ProfileSettings, run_id: str) -> None:
    """Say when other runs carry this run's model, task and checkpoint names: the pages show the newest of them."""
    runs = read_runs(settings.db)
    same = runs[(runs["model"] == settings.model_name) & (runs["task"] == settings.task_name)
                & (runs["checkpoint"] == settings.checkpoint) & (runs["run_id"] != run_id)]
    if not same.empty:
        logger.warning("model %s, task %s, checkpoint %s already has run(s) %s with other inputs or settings; this "
                       "run %s is kept beside them and the pages show the newest", settings.model_name,
                       settings.task_name, settings.checkpoint, ", ".join(same["run_id"]), run_id)


def _calibration(settings: ProfileSettings, vlm: LoadedVLM, dataset: LoadedDataset,
                 run_id: str) -> tuple[EmbeddingStats, dict[str, Encoded]]:
    """Embedding statistics of the first calibration samples, computed once per run and stored with it; with the
    calibration samples' encodings by id (none when the statistics were stored already), so probing reuses them."""
    stored = load_calibration(settings.db, run_id)
    if stored is not None:
        return EmbeddingStats(*(torch.from_numpy(array) for array in stored)), {}
    samples = dataset.samples[: settings.calibration_samples]
    encoded = [_encode(vlm, sample) for sample in samples]
    stats = embedding_stats(vlm, encoded)
    first = run_probes(vlm, encoded[0], stats, seed=settings.seed)
    _warn_if_superseding(settings, run_id)
    register_run(settings.db, run_id=run_id, model=settings.model_name,
                 family=settings.family or vlm.adapter.family, task=settings.task_name, checkpoint=settings.checkpoint, step=settings.step, stage=settings.stage,
                 n_layers=first.probs.shape[1] - 1, settings=asdict(settings))
    write_calibration(settings.db, run_id,
                      np.stack([stats.image_mean, stats.image_std, stats.text_mean, stats.text_std]))
    return stats, {sample.id: item for sample, item in zip(samples, encoded)}


def _encode(vlm: LoadedVLM, sample: Sample) -> Encoded:
    return encode_sample(vlm, sample.image, sample.question, sample.options, sample.hint)


def _probe_samples(settings: ProfileSettings, vlm: LoadedVLM, dataset: LoadedDataset, stats: EmbeddingStats,
                   run_id: str, encoded_already: dict[str, Encoded]) -> None:
    """Probe every sample not yet stored (reusing the encodings given by id): a window of samples is encoded and
    sorted by length, and each forward's `chunk` samples are written in one short write as soon as they are done."""
    done = stored_sample_ids(settings.db, run_id)
    todo = [(i, s) for i, s in enumerate(dataset.samples) if s.id not in done]
    window = settings.chunk * LENGTH_WINDOW
    with tqdm(desc="probing", unit="sample", initial=len(done), total=len(dataset.samples),
              disable=not settings.progress) as bar:
        for start in range(0, len(todo), window):
            part = todo[start:start + window]
            encoded = [encoded_already.get(sample.id) or _encode(vlm, sample) for _, sample in part]
            for members in length_groups(encoded, settings.chunk):
                results = run_probes_batch(vlm, [encoded[i] for i in members],
                                           stats, [settings.seed * 1_000_003 + part[i][0] for i in members])
                write_samples(settings.db, [_sample_row(run_id, *part[i], result)
                                            for i, result in zip(members, results)])
                bar.update(len(members))


def _sample_row(run_id: str, position: int, sample: Sample, result: ProbeResult) -> SampleRow:
    text = sample_text(sample)
    return SampleRow(run_id, sample.id, position, gold_index(sample), result.x1.numpy(), result.x2.numpy(),
                     result.probs.numpy(), result.letter_mass.numpy(), question=text.question, options=text.options,
                     image=text.image)
