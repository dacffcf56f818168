"""A digest of what a loaded dataset holds (ids, texts, answers and image pixels), so a run is keyed by the content
it probed, not by how the file was named: an edited file is a new run, a path spelt two ways is the same one."""

from __future__ import annotations

import hashlib
import json

from pidcore.datasets.sample import LoadedDataset


def dataset_fingerprint(dataset: LoadedDataset) -> str:
    """A digest of every kept sample in order: id, question, options, answer, hint, and the image's size and pixels."""
    digest = hashlib.blake2b(digest_size=16)
    for sample in dataset.samples:
        texts = [sample.id, sample.question, sample.options, sample.answer, sample.hint, sample.image.size]
        digest.update(json.dumps(texts).encode())
        digest.update(sample.image.tobytes())
    return digest.hexdigest()
