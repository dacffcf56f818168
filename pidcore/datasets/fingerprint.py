"""A digest of what a loaded dataset holds (ids, texts, answers and image pixels), so a run is keyed by the content
it probed, not by how the file was named: an edited file is a new run, a path spelt two ways is the same one.

A sample's split, its own prompt and its image on white are part of it where they say something of their own, and
only then, so the digest of a dataset without them (every kind but `paper`) is what it was before they existed: the
split when set (it fixes the estimator's fit and evaluation); the prompt when it is not the plain rendering of the
question and options (`plain_prompt`), and the image on white when there is one, for runs that read them (the
paper's conventions: `paper_inputs`)."""

from __future__ import annotations

import hashlib
import json

from pidcore.atoms import LETTERS
from pidcore.datasets.sample import LoadedDataset, Sample


def dataset_fingerprint(dataset: LoadedDataset, split: bool = True, paper_inputs: bool = True) -> str:
    """A digest of every kept sample in order: id, question, options, answer, hint, the image's size and pixels,
    and (see the module) its split and, with `paper_inputs`, its own prompt and image on white. Both off give the
    digest as it was before samples had them, which is all that question, options and image (what `samples attach`
    writes) need."""
    digest = hashlib.blake2b(digest_size=16)
    for sample in dataset.samples:
        texts = [sample.id, sample.question, sample.options, sample.answer, sample.hint, sample.image.size]
        own = _own_fields(sample, split, paper_inputs)
        digest.update(json.dumps(texts + [own] if own else texts).encode())
        digest.update(sample.image.tobytes())
    return digest.hexdigest()


def plain_prompt(sample: Sample) -> str:
    """The question and its options one per line, "A. option": a prompt that says nothing the sample's question and
    options do not (the paper's JSON written without an answer instruction)."""
    return "\n".join([sample.question, *(f"{letter}. {option}" for letter, option in zip(LETTERS, sample.options))])


def _own_fields(sample: Sample, split: bool, paper_inputs: bool) -> dict[str, str]:
    """The split, prompt and image on white of a sample where they add to its other fields and are asked for."""
    own = {"split": sample.split} if split and sample.split is not None else {}
    if paper_inputs and sample.prompt is not None and sample.prompt != plain_prompt(sample):
        own["prompt"] = sample.prompt
    if paper_inputs and sample.on_white is not None:
        own["on_white"] = hashlib.blake2b(sample.on_white.tobytes(), digest_size=16).hexdigest()
    return own
