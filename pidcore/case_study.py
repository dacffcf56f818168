"""One image and question, live: the three probe distributions and the sample's pointwise atoms at every layer.

A sample gets atoms by being scored inside the reference batch of a profiled run of the same model (its
fitted estimators, stored per layer), using that run's calibration statistics for the masked probes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

from pidcore.estimators.fitted import BatchPIDEstimator
from pidcore.models.loading import LoadedVLM
from pidcore.probes.encoding import encode_sample
from pidcore.probes.engine import EmbeddingStats, embedding_stats, run_probes
from pidcore.store import blob_to_array
from pidcore.store_writer import read_unit

MAX_UPLOAD_BYTES = 5 * 2**20
MAX_PIXELS = 4096 * 4096
MIN_OPTIONS, MAX_OPTIONS = 2, 6
EXPLANATIONS = {
    "r": "Redundancy: what this sample's image and question each tell the model about its answer.",
    "u1": "Vision-unique: what only the image tells the model here.",
    "u2": "Language-unique: what only the question tells the model here.",
    "s": "Synergy: what the model gets only from the image and question together.",
}
LOCAL_NOTE = ("These are local (pointwise) atoms of one sample: their mean over a dataset is the dataset's atom, but "
              "one sample's values can be negative, which means the sample is less informative in that way than "
              "the reference batch on average.")


class CaseInputError(ValueError):
    """The uploaded image or the typed question and options cannot be used."""


@dataclass
class CaseResult:
    """Probe distributions [pass, layer, k] (full, image-only, text-only), letter mass, and atoms per layer."""

    probs: np.ndarray
    letter_mass: np.ndarray
    atoms: pd.DataFrame


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


def reference_runs(db: str, model: str, n_options: int) -> pd.DataFrame:
    """Runs of `model` with the same option count whose fitted estimators were kept (task, checkpoint, run_id)."""
    rows = read_unit(db, "SELECT DISTINCT r.run_id, r.task, r.checkpoint, r.step FROM runs r "
                         "JOIN layer_atoms l USING (run_id) JOIN samples s USING (run_id) "
                         "WHERE r.model = ? AND s.n_options = ? AND l.fitted IS NOT NULL ORDER BY r.task",
                     [model, n_options])
    return pd.DataFrame(rows, columns=["run_id", "task", "checkpoint", "step"])


def analyse(vlm: LoadedVLM, db: str | None, run_id: str | None, image: Image.Image, question: str,
            options: list[str], seed: int = 0) -> CaseResult:
    """Probe the sample; with a reference run, score its pointwise atoms at every layer that run has."""
    question, options = check_question(question, options)
    encoded = encode_sample(vlm, image, question, options)
    stats = _stored_stats(db, run_id) if run_id else embedding_stats(vlm, [encoded])
    result = run_probes(vlm, encoded, stats, seed=seed)
    atoms = _pointwise(db, run_id, result) if run_id else pd.DataFrame(columns=["layer", "r", "u1", "u2", "s"])
    return CaseResult(result.probs.numpy(), result.letter_mass.numpy(), atoms)


def _stored_stats(db: str, run_id: str) -> EmbeddingStats:
    blob = read_unit(db, "SELECT stats FROM calibration WHERE run_id = ?", [run_id])[0][0]
    return EmbeddingStats(*(torch.from_numpy(array) for array in blob_to_array(blob)))


def _pointwise(db: str, run_id: str, result) -> pd.DataFrame:
    """The sample's atoms at each layer with a stored estimator, scored among that layer's reference batch."""
    rows = []
    for layer, blob in read_unit(db, "SELECT layer, fitted FROM layer_atoms WHERE run_id = ? AND fitted IS NOT NULL "
                                     "ORDER BY layer", [run_id]):
        estimator = BatchPIDEstimator.from_bytes(blob)
        probs = result.probs[:, layer].double()
        atoms = estimator.pointwise(result.x1[None].double(), result.x2[None].double(), probs[1:2], probs[2:3],
                                    probs[0:1])
        rows.append({"layer": layer, **{name: float(atoms[name][0]) for name in ("r", "u1", "u2", "s")}})
    return pd.DataFrame(rows)
