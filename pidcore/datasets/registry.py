"""The KIND -> loader table and `load_dataset`, which runs a loader, records skipped rows and applies `limit`."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from pidcore.atoms import DEDUPE_POLICIES
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
    A sample id seen before is an error naming every repeated id, or with dedupe="first" a skipped row."""
    kind, path = parse_spec(spec)
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be at least 1, got {limit}")
    if dedupe not in DEDUPE_POLICIES:
        raise DatasetError(f"unknown duplicate-id policy {dedupe!r} (expected one of {', '.join(DEDUPE_POLICIES)})")
    if kind in GENERATED:
        return GENERATED[kind](str(path), limit)
    if not path.exists():
        raise DatasetError(f"{kind} dataset file not found: {path}")
    if not path.is_file():
        raise DatasetError(f"{kind} dataset is not a regular file: {path}")
    root = Path(image_root).expanduser() if image_root is not None else path.parent
    if not root.is_dir():
        raise DatasetError(f"image root is not a folder: {root}")
    dataset = LoadedDataset(name=path.stem)
    seen: Counter[str] = Counter()
    for row_id, build in LOADERS[kind](path, root):
        seen[row_id] += 1
        try:
            if seen[row_id] > 1 and dedupe == "first":
                raise SkipRow(f"duplicate id: the first row with id {row_id!r} is kept")
            dataset.samples.append(build())
        except SkipRow as reason:
            dataset.skipped.append((row_id, str(reason)))
            logger.warning("%s: skipped row %s: %s", path.name, row_id, reason)
        if len(dataset.samples) == limit:
            break
    repeated = {row_id: count for row_id, count in seen.items() if count > 1}
    if repeated and dedupe == "error":
        raise DatasetError(_duplicates(path, repeated))
    if not dataset.samples:
        raise DatasetError(_no_usable_row(path, dataset.skipped))
    return dataset


def _duplicates(path: Path, repeated: dict[str, int]) -> str:
    """Name the repeated ids (the first ten) and how to go on."""
    shown = ", ".join(f"{row_id!r} ({count} rows)" for row_id, count in list(repeated.items())[:10])
    more = f" and {len(repeated) - 10} more" if len(repeated) > 10 else ""
    return (f"{path.name}: {len(repeated)} sample id(s) appear more than once: {shown}{more}. A run keys samples by "
            "id, so give every row its own id, or pass --dedupe first to keep the first row of each id")


def _no_usable_row(path: Path, skipped: list[tuple[str, str]]) -> str:
    """Explain an empty result by counting the skip reasons by kind (the part before any ': ')."""
    if not skipped:
        return f"no usable row in {path.name}: the file has no rows"
    counts = Counter(reason.split(": ", 1)[0] for _, reason in skipped)
    summary = ", ".join(f"{reason} ({count})" for reason, count in counts.most_common())
    rows = "row" if len(skipped) == 1 else "rows"
    return f"no usable row in {path.name}: {len(skipped)} {rows} skipped: {summary}"
