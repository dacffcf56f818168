"""`profile`: one model x one dataset -> probe outputs for every sample, then atoms for every layer, resumably."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from pidcore.analysis.cautions import run_cautions
from pidcore.atoms import ATOMS, FIT, SYMBOLS
from pidcore.datasets import LoadedDataset, Sample, load_dataset
from pidcore.datasets.fingerprint import dataset_fingerprint
from pidcore.models.identity import identity_key, model_identity
from pidcore.models.loading import LoadedVLM, load_vlm
from pidcore.pipeline.attach import gold_index, sample_text
from pidcore.pipeline.gaussian_layers import estimate_gaussian_layers
from pidcore.pipeline.layers import check_layers, check_sample_count, estimate_layers
from pidcore.pipeline.settings import ProfileSettings, check_model_path
from pidcore.probes.conventions import CLEAN, PAPER_NOISE_SEED, ProbeConventions, conventions_for, parse_mode
from pidcore.probes.encoding import Encoded, ImageRefused, encode_sample
from pidcore.probes.engine import ProbeResult, length_groups, run_probes, run_probes_batch
from pidcore.probes.hidden import check_hidden_states
from pidcore.probes.noise import Noise, NoiseStream, seeded_noise
from pidcore.probes.statistics import EmbeddingStats, PaperStatistics, embedding_stats
from pidcore.store import (
    LayerResult,
    SampleRow,
    ensure_schema,
    load_calibration,
    read_runs,
    register_run,
    stored_hidden_ids,
    stored_sample_ids,
    write_calibration,
    write_hidden_states,
    write_samples,
)
from pidcore.store.read import read_caution_inputs
from pidcore.store.write import rename_run

logger = logging.getLogger(__name__)

# Forwards' worth of samples encoded together and sorted by length, so each forward pads little (128 samples at the
# default batch size: their encodings are held at once).
LENGTH_WINDOW = 16


def profile(settings: ProfileSettings, vlm: LoadedVLM | None = None) -> list[LayerResult]:
    """Probe every sample, then estimate atoms per layer; prints the cautions on the output layer's result and
    returns it. The same model and dataset content with the same settings resume the stored run; anything else is a
    new run. The dataset and the database are checked before the model loads, so a bad path fails in seconds, not
    after a 7B model loads.
    `vlm`: the model, loaded already (a sweep reuses one across its datasets)."""
    settings, run_id = probe_run(settings, vlm)
    results = estimate_layers(settings, run_id)
    if settings.hidden_states:
        _print_gaussian(settings, estimate_gaussian_layers(settings, run_id))
    _print_cautions(settings, run_id, results)
    return results


def _print_gaussian(settings: ProfileSettings, results: list[LayerResult]) -> None:
    """One line with the Gaussian PID on hidden states at the output layer, beside BATCH's table."""
    for result in results:
        atoms = ", ".join(f"{SYMBOLS[name]} {result.atoms[name]:.4f}" for name in ATOMS)
        print(f"{settings.gaussian_estimator} (hidden states) at layer {result.layer}: {atoms} bits")


def _print_cautions(settings: ProfileSettings, run_id: str, results: list[LayerResult]) -> None:
    """Print the cautions (pidcore.analysis.cautions) on the run, one line each with its rule's name: its inputs as
    the store holds its samples, and the probes, fallback and total of `results` (the output layer's, as
    estimate_layers returns them: layer = n_layers)."""
    samples, _ = read_caution_inputs(settings.db, [run_id], settings.estimator)
    rows = pd.DataFrame([{"layer": result.layer, "n_layers": result.layer, **result.atoms.as_dict()}
                         for result in results], columns=["layer", "n_layers", *ATOMS])
    names = (settings.model_name, settings.task_name, settings.checkpoint)
    for caution in run_cautions(names, rows, samples, {result.layer: result.diagnostics for result in results}):
        print(caution.line())


def probe_run(settings: ProfileSettings, vlm: LoadedVLM | None = None) -> tuple[ProfileSettings, str]:
    """Store every sample's probe outputs (the part of `profile` that needs the model); returns the settings with
    the identities resolved, and the run id."""
    settings.check()
    check_layers(settings)
    parse_mode(settings.probes)
    dataset = load_dataset(settings.dataset, limit=settings.limit, image_root=settings.image_dir,
                           dedupe=settings.dedupe)
    if vlm is None:
        check_model_path(settings.model)
    check_sample_count(dataset.samples, settings.dataset)
    ensure_schema(settings.db)
    vlm = vlm or load_vlm(settings.model, settings.device, settings.dtype, settings.trust_remote_code,
                          settings.revision, spread=settings.spread)
    if settings.hidden_states:
        check_hidden_states(vlm)
    settings = resolved_identities(settings, dataset)
    run_id = settings.run_id()
    conventions = conventions_for(settings.probes, vlm.adapter.paper_conventions)
    if conventions.draws and dataset.skipped:
        logger.warning("%d record(s) of %s were skipped; the paper's scripts skip none, so the noise every later "
                       "sample draws differs from theirs", len(dataset.skipped), settings.dataset)
    if settings.probes != CLEAN and vlm.adapter.paper_script is None:
        logger.warning("%s has no stage-2 script in the paper; published applies the conventions of its Qwen scripts "
                       "that do not depend on the model class: %s", vlm.adapter.family, ", ".join(conventions.applied))
    if vlm.adapter.instruction_inputs and conventions.instruction:
        logger.warning("%s's image features read the prompt (%s), so the image-only probe's image tokens carry the "
                       "question: that probe is not complete (the paper's `instruction` convention); --probes clean "
                       "gives them an empty instruction there", vlm.adapter.family,
                       ", ".join(vlm.adapter.instruction_inputs))
    encoder = _Encoder(vlm, conventions)
    stats, encoded = _calibration(settings, vlm, dataset, run_id, encoder)
    _probe_samples(settings, vlm, dataset, stats, run_id, encoded, encoder)
    encoder.report(settings.dataset)
    return settings, run_id


def resolved_identities(settings: ProfileSettings, dataset: LoadedDataset) -> ProfileSettings:
    """The settings with what the model and dataset resolve to here. Identities given already (a sweep's plan)
    must match what is found here, so a worker never stores rows under a plan made from other files; a planned
    model identity without a weights fingerprint (a hub id the planner had no copy of) is kept as planned."""
    model = identity_key(model_identity(settings.model, settings.revision))
    content = dataset_fingerprint(dataset, paper_inputs=settings.probes != CLEAN)
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


def _say_renamed(run_id: str, changes: list[str]) -> None:
    """Say when this command gave its stored run other names than it had: the pages show it under the new ones."""
    if changes:
        logger.warning("run %s was stored under other names; it now carries this command's: %s", run_id,
                       "; ".join(changes))


def _calibration(settings: ProfileSettings, vlm: LoadedVLM, dataset: LoadedDataset, run_id: str,
                 encoder: _Encoder) -> tuple[EmbeddingStats, dict[str, Encoded]]:
    """Embedding statistics, computed once per run and stored with it: the paper's over the training split (the
    `statistics` convention), else ours over the first calibration samples; with the encodings made on the way by
    id (none when the statistics were stored already, or for the paper's, which may cover thousands), so probing
    reuses them."""
    stored = load_calibration(settings.db, run_id)
    if stored is not None:
        _say_renamed(run_id, rename_run(settings.db, run_id, model=settings.model_name,
                                        family=settings.family or vlm.adapter.family))
        return EmbeddingStats(*(torch.from_numpy(array) for array in stored)), {}
    conventions = encoder.conventions
    if conventions.statistics:
        stats, encoded = _paper_statistics(settings, vlm, dataset, encoder), {}
    else:
        samples = dataset.samples[: settings.calibration_samples]
        encoded = {sample.id: item for sample in samples if (item := encoder(sample)) is not None}
        stats = embedding_stats(vlm, list(encoded.values()))
    first = next(iter(encoded.values()), None) or encoder.first(dataset.samples)
    depth = run_probes(vlm, first, stats, seed=settings.seed).probs.shape[1] - 1
    _warn_if_superseding(settings, run_id)
    _say_renamed(run_id, register_run(
        settings.db, run_id=run_id, model=settings.model_name, family=settings.family or vlm.adapter.family,
        task=settings.task_name, checkpoint=settings.checkpoint, step=settings.step, stage=settings.stage,
        n_layers=depth, settings=_recorded_settings(settings, vlm, conventions)))
    write_calibration(settings.db, run_id,
                      np.stack([stats.image_mean, stats.image_std, stats.text_mean, stats.text_std]))
    return stats, encoded


def _paper_statistics(settings: ProfileSettings, vlm: LoadedVLM, dataset: LoadedDataset,
                      encoder: _Encoder) -> EmbeddingStats:
    """The paper's stage 1 over the training split (every sample when the dataset has no split)."""
    training = [sample for sample in dataset.samples if sample.split in (None, FIT)]
    statistics = PaperStatistics()
    for sample in tqdm(training, desc="statistics", unit="sample", disable=not settings.progress):
        encoded = encoder(sample)
        if encoded is not None:
            statistics.add(vlm, encoded)
    return statistics.result()


def _recorded_settings(settings: ProfileSettings, vlm: LoadedVLM, conventions: ProbeConventions) -> dict:
    """The run's settings as stored, with the probe conventions it applied and the paper script they follow."""
    return {**asdict(settings), "probe_conventions": conventions.applied,
            "paper_script": vlm.adapter.paper_script if settings.probes != CLEAN else None}


def _encode(vlm: LoadedVLM, sample: Sample, conventions: ProbeConventions) -> Encoded:
    """The sample's encoding; under the `images` convention its image as the paper's script sees it (an RGBA image
    of the paper's JSON on white, where the family's script composites it)."""
    image = sample.on_white if conventions.images and sample.on_white is not None else sample.image
    return encode_sample(vlm, image, sample.question, sample.options, sample.hint, prompt=sample.prompt,
                         conventions=conventions)


class _Encoder:
    """Each sample's encoding, or None for a sample whose image the processor refuses: that sample is skipped,
    named in a warning once, and counted in the run's closing report."""

    def __init__(self, vlm: LoadedVLM, conventions: ProbeConventions) -> None:
        self.vlm, self.conventions = vlm, conventions
        self.refused: dict[str, str] = {}

    def __call__(self, sample: Sample) -> Encoded | None:
        if sample.id in self.refused:
            return None
        try:
            return _encode(self.vlm, sample, self.conventions)
        except ImageRefused as error:
            self.refused[sample.id] = str(error)
            logger.warning("skipped sample %s: %s", sample.id, error)
            return None

    def first(self, samples: list[Sample]) -> Encoded:
        """The first sample that encodes (to measure the model's depth); an error naming the reason when none does."""
        for sample in samples:
            encoded = self(sample)
            if encoded is not None:
                return encoded
        raise ValueError(f"the processor refuses the image of every sample ({len(self.refused)}); the first: "
                         f"{next(iter(self.refused.values()), 'none given')}")

    def report(self, dataset: str) -> None:
        """Count and name the samples skipped for their images, and what that means for the paper's noise stream."""
        if not self.refused:
            return
        logger.warning("%s: %d sample(s) skipped because the processor refuses their images: %s", dataset,
                       len(self.refused), ", ".join(self.refused))
        if self.conventions.draws:
            logger.warning("the paper's noise stream skips no sample, so every sample after a skipped one draws "
                           "other noise than in the paper's scripts")


class _Noises:
    """Each sample's noise: from its own seed, or (the `draws` convention) from the paper's stream of its split,
    which must be walked past every sample in dataset order, stored ones included."""

    def __init__(self, settings: ProfileSettings, vlm: LoadedVLM, stats: EmbeddingStats,
                 conventions: ProbeConventions) -> None:
        self.settings, self.vlm, self.stats, self.draws = settings, vlm, stats, conventions.draws
        self.streams: dict[str | None, NoiseStream] = {}

    def walk(self, sample: Sample, encoded: Encoded) -> None:
        if self.draws:
            self._stream(sample.split).advance(sample.id, encoded)

    def noise(self, position: int, sample: Sample, encoded: Encoded) -> Noise:
        if self.draws:
            return self._stream(sample.split).noise(sample.id, encoded)
        return seeded_noise(encoded, self.stats, self.settings.seed * 1_000_003 + position)

    def _stream(self, split: str | None) -> NoiseStream:
        if split not in self.streams:
            self.streams[split] = NoiseStream(self.stats, PAPER_NOISE_SEED + self.settings.seed, self.vlm.dtype,
                                              self.vlm.device)
        return self.streams[split]


def _probe_samples(settings: ProfileSettings, vlm: LoadedVLM, dataset: LoadedDataset, stats: EmbeddingStats,
                   run_id: str, encoded_already: dict[str, Encoded], encoder: _Encoder) -> None:
    """Probe every sample not yet stored (reusing the encodings given by id): a window of samples is encoded and
    sorted by length, and each forward's `chunk` samples are written in one short write as soon as they are done.
    The paper's noise stream is walked past stored samples too, so a resumed run draws what a whole one would. A
    sample whose image the processor refuses is skipped (`encoder` names it). With `hidden_states`, a sample stored
    without its hidden-state features is probed again for them; its stored probe outputs are kept as they are."""
    done = stored_sample_ids(settings.db, run_id)
    if settings.hidden_states:  # a stored sample without its features is probed again for them
        done &= stored_hidden_ids(settings.db, run_id)
    if len(done) == len(dataset.samples):
        return
    conventions = encoder.conventions
    noises = _Noises(settings, vlm, stats, conventions)
    window = settings.chunk * LENGTH_WINDOW
    samples = list(enumerate(dataset.samples))
    with tqdm(desc="probing", unit="sample", initial=len(done), total=len(samples),
              disable=not settings.progress) as bar:
        for start in range(0, len(samples), window):
            candidates = [(i, s) for i, s in samples[start:start + window] if noises.draws or s.id not in done]
            encodings = [encoded_already.get(sample.id) or encoder(sample) for _, sample in candidates]
            walked = [pair for pair, item in zip(candidates, encodings) if item is not None]
            encoded = [item for item in encodings if item is not None]
            bar.update(sum(item is None for item in encodings))  # skipped samples are done with too
            for (_, sample), item in zip(walked, encoded):
                noises.walk(sample, item)
            part = [index for index, (_, sample) in enumerate(walked) if sample.id not in done]
            for members in length_groups([encoded[i] for i in part], settings.chunk):
                chosen = [part[i] for i in members]
                batch_noise = [noises.noise(*walked[i], encoded[i]) for i in chosen]
                results = run_probes_batch(vlm, [encoded[i] for i in chosen], batch_noise, conventions,
                                           settings.hidden_states)
                write_samples(settings.db, [_sample_row(run_id, *walked[i], result)
                                            for i, result in zip(chosen, results)])
                if settings.hidden_states:
                    write_hidden_states(settings.db, run_id, {walked[i][1].id: result.hidden.numpy()
                                                              for i, result in zip(chosen, results)})
                bar.update(len(chosen))


def _sample_row(run_id: str, position: int, sample: Sample, result: ProbeResult) -> SampleRow:
    text = sample_text(sample)
    return SampleRow(run_id, sample.id, position, gold_index(sample), result.x1.numpy(), result.x2.numpy(),
                     result.probs.numpy(), result.letter_mass.numpy(), split=sample.split, question=text.question,
                     options=text.options, image=text.image)
