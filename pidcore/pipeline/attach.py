"""`samples attach`: stored samples of runs probed before samples kept what they showed get their question, options
and image, reloaded from the dataset each run's settings name; a sample whose dataset sample is missing or disagrees
with it is skipped whole and named."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from pidcore.datasets import LoadedDataset, Sample, load_dataset
from pidcore.datasets.fingerprint import dataset_fingerprint
from pidcore.probes.conventions import CLEAN
from pidcore.store import (SampleText, ensure_schema, image_to_png, read_run, read_sample_table, runs_without_texts,
                           write_sample_texts)

# Samples attached per write unit: short transactions, so readers get the file between them.
CHUNK = 64


@dataclass
class Attached:
    """What attaching did to one run: samples given their texts, samples skipped (id, reason), or why its dataset
    could not be used (then nothing was attached)."""

    run_id: str
    task: str
    attached: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None


def gold_index(sample: Sample) -> int | None:
    """The gold answer a sample's row stores: its answer's option index, None without one (profile and attach)."""
    return sample.letters.index(sample.answer) if sample.answer else None


def sample_text(sample: Sample) -> SampleText:
    """What a sample's row stores of what it showed (profile and attach): question, option strings and its image as
    PNG (None when too large to keep)."""
    return SampleText(sample.id, sample.question, list(sample.options), image_to_png(sample.image))


def attach_texts(db: str | Path, image_root: str | Path | None = None, progress: bool = True) -> list[Attached]:
    """Attach texts to every run with samples that lack them, a run at a time; the database is left untouched when
    none lacks them. `image_root` is where a file dataset's images are (default: the run's recorded `image_dir`, else
    beside the file)."""
    run_ids = runs_without_texts(db)
    if run_ids:
        ensure_schema(db)
    return [_attach_run(db, run_id, image_root)
            for run_id in tqdm(run_ids, desc="attaching", unit="run", disable=not progress)]


def _attach_run(db: str | Path, run_id: str, image_root: str | Path | None) -> Attached:
    """Reload one run's dataset and attach the texts of its stored samples that match it, in short writes."""
    run = read_run(db, run_id)
    result = Attached(run_id, run["task"])
    try:
        dataset = _dataset_of(run["settings"], image_root)
    except (ValueError, OSError) as error:
        result.error = f"cannot load its dataset {run['settings'].get('dataset')!r}: {error}"
        return result
    by_id = {sample.id: sample for sample in dataset.samples}
    stored = read_sample_table(db, run_id)
    texts = []
    for row in stored[stored["question"].isna()].itertuples():
        reason = _disagreement(row.sample_id, row.gold, row.n_options, by_id)
        if reason:
            result.skipped.append((row.sample_id, reason))
        else:
            texts.append(sample_text(by_id[row.sample_id]))
    for start in range(0, len(texts), CHUNK):
        write_sample_texts(db, run_id, texts[start:start + CHUNK])
    result.attached = len(texts)
    return result


def _dataset_of(settings: Mapping, image_root: str | Path | None) -> LoadedDataset:
    """The dataset a run probed, loaded as `profile` loaded it (spec, limit, duplicate-id policy, image folder); a
    ValueError when the run recorded the dataset's content and it has changed since, so no text of another sample is
    attached.
    The digest without split and the paper's inputs also matches (a paper-JSON run recorded before samples had a
    prompt): what is attached, question, options and image, is all in it. The paper's split layout reloads as
    profile loaded it."""
    root = image_root if image_root is not None else settings.get("image_dir")
    dataset = load_dataset(settings.get("dataset") or "", limit=settings.get("limit"), image_root=root,
                           dedupe=settings.get("dedupe", "error"))
    recorded = settings.get("dataset_identity")
    if recorded and recorded != dataset_fingerprint(dataset, split=False, paper_inputs=False) and (
            now := dataset_fingerprint(dataset, paper_inputs=settings.get("probes", CLEAN) != CLEAN)) != recorded:
        raise ValueError(f"its content has changed since the run probed it (fingerprint {recorded} then, {now} now)")
    return dataset


def _disagreement(sample_id: str, gold: int | None, n_options: int, by_id: Mapping[str, Sample]) -> str | None:
    """Why a stored sample cannot take its dataset sample's texts (missing, other option count or gold), or None."""
    sample = by_id.get(sample_id)
    if sample is None:
        return "not in the dataset: no sample with this id"
    if len(sample.options) != n_options:
        return f"options differ: {n_options} stored, {len(sample.options)} in the dataset"
    stored_gold = None if pd.isna(gold) else int(gold)
    if stored_gold != gold_index(sample):
        return f"gold differs: option index {stored_gold} stored, {gold_index(sample)} in the dataset"
    return None
