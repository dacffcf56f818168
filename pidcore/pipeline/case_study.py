"""One image and question, live: the three probe distributions and the sample's pointwise atoms at every layer.

A sample gets atoms by being scored inside the reference batch of a profiled run of the same model (its
fitted estimators, stored per layer), using that run's calibration statistics for the masked probes.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

from pidcore.analysis.regimes import final_rows
from pidcore.atoms import LETTER_MASS_FALLBACK, MIN_OPTIONS, Atoms
from pidcore.estimators import BatchPIDEstimator
from pidcore.models.loading import LoadedVLM
from pidcore.probes.conventions import CLEAN, PAPER_NOISE_SEED, ProbeConventions, conventions_for
from pidcore.probes.encoding import Encoded, encode_sample
from pidcore.probes.engine import ProbeResult, run_probes_batch
from pidcore.probes.noise import Noise, NoiseStream, seeded_noise
from pidcore.probes.statistics import EmbeddingStats, PaperStatistics, embedding_stats
from pidcore.pipeline.layers import with_fallback
from pidcore.pipeline.settings import applies_fallback
from pidcore.store import fitted_estimators, load_calibration

MAX_UPLOAD_BYTES = 5 * 2**20
MAX_PIXELS = 4096 * 4096
MAX_OPTIONS = 6


class CaseInputError(ValueError):
    """The uploaded image or the typed question and options cannot be used."""


@dataclass
class CaseResult:
    """Probe distributions [pass, layer, k] (full, image-only, text-only), letter mass [pass, layer], and the
    sample's pointwise atoms by layer (empty without a reference run)."""

    probs: np.ndarray
    letter_mass: np.ndarray
    atoms: dict[int, Atoms]


def read_image(data: bytes) -> Image.Image:
    """Decode an uploaded PNG or JPEG, bounded in bytes and pixels; a clear error for anything else."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise CaseInputError(f"the image is {len(data) / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            if probe.format not in ("PNG", "JPEG"):
                raise CaseInputError(f"the file is {probe.format}, not a PNG or JPEG image")
            if probe.width * probe.height > MAX_PIXELS:
                raise CaseInputError(f"the image is {probe.width}x{probe.height} pixels; the limit is 4096x4096")
            probe.verify()
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise CaseInputError(f"the file is not a readable PNG or JPEG image ({error})") from error


def check_question(question: str, options: list[str]) -> tuple[str, list[str]]:
    """A non-empty question and 2-6 non-empty options, stripped."""
    question = question.strip()
    options = [option.strip() for option in options if option.strip()]
    if not question:
        raise CaseInputError("the question is empty")
    if not MIN_OPTIONS <= len(options) <= MAX_OPTIONS:
        raise CaseInputError(f"give {MIN_OPTIONS} to {MAX_OPTIONS} options, one per line (got {len(options)})")
    return question, options


def analyse(vlm: LoadedVLM, db: str, run_id: str | None, estimator: str, image: Image.Image, question: str,
            options: list[str], seed: int = 0, probes: str = CLEAN) -> CaseResult:
    """Probe the sample with the `probes` conventions; with a reference run of the database, score its pointwise
    atoms at every layer where that run kept the estimator's fitted networks, with the estimator's conventions (the
    letter-mass fallback where it applies). Without one, the masked probes use the sample's own embedding
    statistics and no atoms are scored. The paper's draws for one sample are the first of its stream."""
    question, options = check_question(question, options)
    conventions = conventions_for(probes, vlm.adapter.paper_conventions)
    encoded = encode_sample(vlm, image, question, options, conventions=conventions)
    stats = _stored_stats(db, run_id) if run_id else _own_stats(vlm, encoded, conventions)
    result = run_probes_batch(vlm, [encoded], [_noise(vlm, encoded, stats, seed, conventions)], conventions)[0]
    atoms = _pointwise(db, run_id, estimator, result) if run_id else {}
    return CaseResult(result.probs.numpy(), result.letter_mass.numpy(), atoms)


def _own_stats(vlm: LoadedVLM, encoded: Encoded, conventions: ProbeConventions) -> EmbeddingStats:
    """The sample's own embedding statistics, the paper's way or ours."""
    if not conventions.statistics:
        return embedding_stats(vlm, [encoded])
    statistics = PaperStatistics()
    statistics.add(vlm, encoded)
    return statistics.result()


def _noise(vlm: LoadedVLM, encoded: Encoded, stats: EmbeddingStats, seed: int,
           conventions: ProbeConventions) -> Noise:
    if not conventions.draws:
        return seeded_noise(encoded, stats, seed)
    stream = NoiseStream(stats, PAPER_NOISE_SEED + seed, vlm.dtype, vlm.device)
    stream.advance("case", encoded)
    return stream.noise("case", encoded)


def _stored_stats(db: str, run_id: str) -> EmbeddingStats:
    stored = load_calibration(db, run_id)
    if stored is None:
        raise CaseInputError(f"the reference run {run_id} has no stored calibration statistics")
    return EmbeddingStats(*(torch.from_numpy(array) for array in stored))


def _pointwise(db: str, run_id: str, estimator_name: str, result: ProbeResult) -> dict[int, Atoms]:
    """The sample's atoms at each layer with a stored estimator, scored among that layer's reference batch."""
    atoms = {}
    for layer, blob in fitted_estimators(db, run_id, estimator_name):
        estimator = BatchPIDEstimator.from_bytes(blob)
        probs = result.probs[None, :, layer].double().numpy()
        if applies_fallback(estimator_name):
            probs, _ = with_fallback(probs, result.letter_mass[None, :, layer].double().numpy(), LETTER_MASS_FALLBACK)
        full, image_only, text_only = torch.from_numpy(probs[0])[:, None]
        local = estimator.pointwise(result.x1[None].double(), result.x2[None].double(), image_only, text_only, full)
        atoms[layer] = Atoms.from_mapping({name: values[0] for name, values in local.items()})
    return atoms


# How much a task's answers depend on the image, said once for the page: the measure that breaks a tie of question
# overlaps (image_dependence).
IMAGE_DEPENDENCE_NOTE = ("the mean vision-unique plus synergy (U1 + S, bits) of its profiled runs of the chosen models "
                         "(final checkpoint, output layer): the information about the answer that needs the image")


def image_dependence(atoms: pd.DataFrame, models: Iterable[str], estimator: str) -> dict[str, float]:
    """Each task's mean U1 + S over the final output rows of `models` under `estimator` (IMAGE_DEPENDENCE_NOTE), read
    from the stored atoms so a tie of question overlaps goes to the task whose answers depend most on the image."""
    final = final_rows(atoms[(atoms["estimator"] == estimator) & atoms["model"].isin(list(models))])
    return (final["u1"] + final["s"]).groupby(final["task"]).mean().dropna().to_dict()


def closest_task(question: str, questions: Mapping[str, Iterable[str]],
                 dependence: Mapping[str, float]) -> str | None:
    """The task (name -> its stored questions) whose questions share the most words with `question` (the largest
    Jaccard overlap of lower-case word sets with any one of them); a tie, no overlap at all included, goes to the
    task with the largest `dependence` on the image (image_dependence; a task without one counts as least), not
    to a name order (only tasks alike in both go to the first given). None when there is none."""
    asked = _words(question)

    def score(task: str) -> tuple[float, float]:
        overlap = max((_overlap(asked, _words(text)) for text in questions[task]), default=0.0)
        return overlap, dependence.get(task, -math.inf)

    return max(questions, key=score, default=None)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _overlap(first: set[str], second: set[str]) -> float:
    return len(first & second) / len(first | second) if first | second else 0.0
