"""The KIND -> loader table and `load_dataset`, which resolves a spec to its file(s), runs a loader, records skipped
rows and applies `limit`."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pidcore.atoms import DEDUPE_POLICIES, PAPER_SPLITS
from pidcore.datasets import jsonl, mmbench, paper_json, pmc_vqa, pope, shapes
from pidcore.datasets.rows import Row
from pidcore.datasets.sample import DatasetError, LoadedDataset, SkipRow

logger = logging.getLogger("pidcore.datasets")

Loader = Callable[[Path, Path], Iterator[Row]]
LOADERS: dict[str, Loader] = {
    "mmbench": mmbench.iter_rows,
    "pope": pope.iter_rows,
    "pmc-vqa": pmc_vqa.iter_rows,
    "jsonl": jsonl.iter_rows,
    "paper": paper_json.iter_rows,
}
GENERATED: dict[str, Callable[[str, int | None], LoadedDataset]] = {"shapes": shapes.load}
KINDS = tuple(LOADERS) + tuple(GENERATED)
# Kinds that also read the paper's split layout, `PREFIX + "train.json"` and `PREFIX + "val.json"`: the loader takes
# the prefix of the ids it gives records without one.
SPLIT_LOADERS: dict[str, Callable[[Path, Path, str], Iterator[Row]]] = {"paper": paper_json.iter_rows}


@dataclass(frozen=True)
class Source:
    """One file a dataset is read from: the whole dataset (split None), or one split of the paper's layout, whose
    records without an id are named `prefix` + position."""

    path: Path
    split: str | None = None
    prefix: str = ""


def parse_spec(spec: str) -> tuple[str, Path]:
    """Split a `KIND:PATH` spec and check the kind, so a typo fails before any file is touched.

    For generated kinds (`shapes:TASK`) the part after the colon names the task, not a file.
    """
    kind, separator, path = spec.partition(":")
    kind = kind.strip().lower()
    if not separator or not path.strip():
        raise DatasetError(f"dataset spec {spec!r} is not KIND:PATH (KIND one of {', '.join(KINDS)})")
    if kind not in KINDS:
        raise DatasetError(f"unknown dataset kind {kind!r} (expected one of {', '.join(KINDS)})")
    return kind, Path(path.strip()).expanduser()


def load_dataset(spec: str, limit: int | None = None, image_root: str | Path | None = None,
                 dedupe: str = "error") -> LoadedDataset:
    """Load up to `limit` usable samples from `KIND:PATH`, skipping and logging bad rows instead of failing on them.
    A sample id seen before is an error naming every repeated id, or with dedupe="first" a skipped row.

    `paper:PATH` also reads the paper's split layout (see `resolve_sources`): the train file's samples first, then
    the val file's, each in file order, with `split` "fit" and "evaluation". There `limit` applies to each split (the
    first `limit` usable records of train and the first `limit` of val), every split must keep a sample, ids must be
    unique across both files, a record without an id is named `train-<pos>` / `val-<pos>` (0-based), and a skipped
    row is recorded as "<file name>: <id>". `image_root`: the folder relative image paths are resolved under (default:
    the folder of the dataset file, or of the split files)."""
    kind, path = parse_spec(spec)
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be at least 1, got {limit}")
    if dedupe not in DEDUPE_POLICIES:
        raise DatasetError(f"unknown duplicate-id policy {dedupe!r} (expected one of {', '.join(DEDUPE_POLICIES)})")
    if kind in GENERATED:
        return GENERATED[kind](str(path), limit)
    sources = resolve_sources(kind, path)
    root = Path(image_root).expanduser() if image_root is not None else sources[0].path.parent
    if not root.is_dir():
        raise DatasetError(f"image root is not a folder: {root}")
    dataset = LoadedDataset(name=_dataset_name(path, sources))
    seen: Counter[str] = Counter()
    kept_at: dict[str, int] = {}  # each kept id: which of its rows (1 = the first) was kept
    for source in sources:
        _read_source(kind, source, root, dataset, seen, kept_at, limit, dedupe)
    repeated = {row_id: count for row_id, count in seen.items() if count > 1}
    if repeated and dedupe == "error":
        raise DatasetError(_duplicates(" and ".join(source.path.name for source in sources), repeated))
    if not dataset.samples:
        raise DatasetError(_no_usable_row(path.name, dataset.skipped))
    return dataset


def resolve_sources(kind: str, path: Path) -> list[Source]:
    """The file(s) a spec's path names, in this order: an existing file is the whole dataset (as ever); for a kind
    with a split layout (`paper`), a folder is the layout `DIR/train.json` + `DIR/val.json`, and a path that does not
    exist is a prefix, `PATH + "train.json"` + `PATH + "val.json"` (the paper's `--read_dir PREFIX --data_mode`).
    A layout lacking one of its files is refused naming it; a path that is none of these names what was tried."""
    if path.is_file():
        return [Source(path)]
    if kind not in SPLIT_LOADERS or (path.exists() and not path.is_dir()):
        if not path.exists():
            raise DatasetError(f"{kind} dataset file not found: {path}")
        raise DatasetError(f"{kind} dataset is not a regular file: {path}")
    if path.is_dir():
        files = {stem: path / f"{stem}.json" for stem in PAPER_SPLITS}
        layout = f"folder {path}"
    else:
        files = {stem: Path(f"{path}{stem}.json") for stem in PAPER_SPLITS}
        layout = f"prefix {path}"
        if not any(file.exists() for file in files.values()):
            tried = " and ".join(str(file) for file in files.values())
            raise DatasetError(f"{kind} dataset file not found: {path} (no such file or folder, nor split files "
                               f"{tried})")
    missing = [str(file) for file in files.values() if not file.exists()]
    if missing:
        raise DatasetError(f"{kind} split layout ({layout}) lacks {' and '.join(missing)}: it needs both "
                           f"{' and '.join(str(file) for file in files.values())}")
    for file in files.values():
        if not file.is_file():
            raise DatasetError(f"{kind} split file is not a regular file: {file}")
    return [Source(file, PAPER_SPLITS[stem], f"{stem}-") for stem, file in files.items()]


def _read_source(kind: str, source: Source, root: Path, dataset: LoadedDataset, seen: Counter[str],
                 kept_at: dict[str, int], limit: int | None, dedupe: str) -> None:
    """Append one file's usable samples (up to `limit` of them) and its skipped rows to `dataset`; a split file
    that keeps no sample is an error, since each split has a role (fitting, evaluation). With dedupe="first" the
    first usable row of each id is kept: a row skipped for its own reason keeps no id from a later good row."""
    rows = SPLIT_LOADERS[kind](source.path, root, source.prefix) if source.split else LOADERS[kind](source.path, root)
    kept, skipped = 0, len(dataset.skipped)
    for row_id, build in rows:
        seen[row_id] += 1
        try:
            if row_id in kept_at and dedupe == "first":
                raise SkipRow(_duplicate_reason(row_id, kept_at[row_id]))
            sample = build()
            sample.split = source.split
            dataset.samples.append(sample)
            kept_at.setdefault(row_id, seen[row_id])
            kept += 1
        except SkipRow as reason:
            dataset.skipped.append((f"{source.path.name}: {row_id}" if source.split else row_id, str(reason)))
            logger.warning("%s: skipped row %s: %s", source.path.name, row_id, reason)
        if kept == limit:
            break
    if source.split and not kept:
        raise DatasetError(_no_usable_row(source.path.name, dataset.skipped[skipped:]))


def _duplicate_reason(row_id: str, kept_row: int) -> str:
    """Why a later row of a kept id is skipped, naming which row of that id was kept."""
    if kept_row == 1:
        return f"duplicate id: the first row with id {row_id!r} is kept"
    return (f"duplicate id: row {kept_row} with id {row_id!r} is kept, the first usable one (the rows before it were "
            "skipped)")


def _dataset_name(path: Path, sources: list[Source]) -> str:
    """A file's stem; a layout's folder name, or its prefix's name without a trailing separator (mmbench_en_ ->
    mmbench_en)."""
    if len(sources) == 1:
        return path.stem
    return path.name if path.is_dir() else path.name.rstrip("_-. ") or path.name


def _duplicates(where: str, repeated: dict[str, int]) -> str:
    """Name the repeated ids (the first ten) and how to go on."""
    shown = ", ".join(f"{row_id!r} ({count} rows)" for row_id, count in list(repeated.items())[:10])
    more = f" and {len(repeated) - 10} more" if len(repeated) > 10 else ""
    return (f"{where}: {len(repeated)} sample id(s) appear more than once: {shown}{more}. A run keys samples by "
            "id, so give every row its own id, or pass --dedupe first to keep the first row of each id")


def _no_usable_row(name: str, skipped: list[tuple[str, str]]) -> str:
    """Explain an empty result by counting the skip reasons by kind (the part before any ': ')."""
    if not skipped:
        return f"no usable row in {name}: the file has no rows"
    counts = Counter(reason.split(": ", 1)[0] for _, reason in skipped)
    summary = ", ".join(f"{reason} ({count})" for reason, count in counts.most_common())
    rows = "row" if len(skipped) == 1 else "rows"
    return f"no usable row in {name}: {len(skipped)} {rows} skipped: {summary}"
