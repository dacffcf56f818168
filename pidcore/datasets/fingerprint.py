"""A digest of what a loaded dataset holds (ids, texts, answers and image pixels), so a run is keyed by the content
it probed, not by how the file was named: an edited file is a new run, a path spelt two ways is the same one.

A sample's `split` and `prompt` are part of it when they say something of their own, and only then, so the digest of
a dataset without them (every kind but `paper`) is what it was before they existed: `split` when set, `prompt` when
it is not the plain rendering of the question and options (`plain_prompt`), which those are digested as already."""

from __future__ import annotations

import hashlib
import json

from pidcore.atoms import LETTERS
from pidcore.datasets.sample import LoadedDataset, Sample


def dataset_fingerprint(dataset: LoadedDataset, conventions: bool = True) -> str:
    """A digest of every kept sample in order: id, question, options, answer, hint, the image's size and pixels,
    and (see the module) split and prompt. `conventions=False` leaves split and prompt out: the digest as it was
    before samples had them, which is all that question, options and image (what `samples attach` writes) need."""
    digest = hashlib.blake2b(digest_size=16)
    for sample in dataset.samples:
        texts = [sample.id, sample.question, sample.options, sample.answer, sample.hint, sample.image.size]
        own = _own_fields(sample) if conventions else {}
        digest.update(json.dumps(texts + [own] if own else texts).encode())
        digest.update(sample.image.tobytes())
    return digest.hexdigest()


def plain_prompt(sample: Sample) -> str:
    """The question and its options one per line, "A. option": a prompt that says nothing the sample's question and
    options do not (the paper's JSON written without an answer instruction)."""
    return "\n".join([sample.question, *(f"{letter}. {option}" for letter, option in zip(LETTERS, sample.options))])


def _own_fields(sample: Sample) -> dict[str, str]:
    """The split and prompt of a sample where they add to its other fields."""
    own = {} if sample.split is None else {"split": sample.split}
    if sample.prompt is not None and sample.prompt != plain_prompt(sample):
        own["prompt"] = sample.prompt
    return own
