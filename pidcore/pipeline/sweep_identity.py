"""The identities a sweep's plan needs (each model's and each dataset's, which make the run ids), found cheaply:
kept in the shard folder by a stamp of their files (path, size, mtime and ctime), so a sweep planned again reads
no dataset and hashes no weights whose files are unchanged, and computed where they are missing by `across` (in
this process, or as CPU tasks on a Ray cluster, so the head node loads no dataset and hashes no weights).

The identities are the ones `profile` computes (the dataset's content fingerprint, the model folder's weights
fingerprint), so a unit's run id is the one `profile` gives the same inputs. A stamp cannot see an image edited
in place beside a dataset file: the worker, which fingerprints what it loads, refuses such a unit, and the driver
then forgets that unit's entries so the next plan finds the new content.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pidcore.datasets import load_dataset
from pidcore.datasets.fingerprint import dataset_fingerprint
from pidcore.datasets.registry import GENERATED, parse_spec, resolve_sources
from pidcore.datasets.sample import DatasetError
from pidcore.models.identity import SAFETENSORS_INDEX, SETTLED_NS, identity_key, model_identity
from pidcore.pipeline.settings import ProfileSettings
from pidcore.probes.conventions import CLEAN

# The file in the shard folder that keeps the identities by stamp.
IDENTITY_FILE = "identities.json"
DATASETS, MODELS = "datasets", "models"
# How the plan computes the identities it lacks: calls fn(*args) for each args, in order, and returns the results.
Across = Callable[[Callable[..., Any], list[tuple]], list[Any]]


def data_key(settings: ProfileSettings) -> tuple:
    """What makes a unit's samples: the dataset spec, limit, duplicate policy, image folder and probe inputs."""
    return settings.dataset, settings.limit, settings.dedupe, settings.image_dir, settings.probes != CLEAN


def identify_dataset(key: tuple) -> tuple[str, int] | str:
    """A dataset's content fingerprint (as `profile` computes it) and sample count, or the loader's message where it
    cannot be read."""
    spec, limit, dedupe, image_dir, paper_inputs = key
    try:
        dataset = load_dataset(spec, limit=limit, image_root=image_dir, dedupe=dedupe)
    except DatasetError as error:
        return str(error)
    return dataset_fingerprint(dataset, paper_inputs=paper_inputs), len(dataset.samples)


def identify_model(model: str, revision: str | None) -> str:
    """A model's identity as a run's key stores it (weights fingerprinted where its files are here)."""
    return identity_key(model_identity(model, revision))


def in_process(fn: Callable[..., Any], calls: list[tuple]) -> list[Any]:
    """`Across` in this process."""
    return [fn(*args) for args in calls]


def dataset_stamp(key: tuple) -> tuple[str, bool] | None:
    """The dataset's stamp: its key and its files' size, mtime and ctime (a generated kind has none), and whether
    they have settled; None where its files cannot be found (the loader then says why)."""
    kind, path = parse_spec(key[0])
    if kind in GENERATED:
        return json.dumps([*key, []]), True
    try:
        files = [source.path for source in resolve_sources(kind, path)]
    except DatasetError:
        return None
    return _stamped(list(key), files)


def model_stamp(model: str, revision: str | None) -> tuple[str, bool] | None:
    """A model folder's stamp: its resolved path and the files its weights fingerprint reads; None for a hub id
    (its identity is cheap without a local copy, and is computed on the driver as `profile` would)."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return None
    index = [folder / name for name in ("config.json", SAFETENSORS_INDEX) if (folder / name).is_file()]
    return _stamped([str(folder.resolve()), revision], index + sorted(folder.glob("*.safetensors")))


def _stamped(key: list, files: list[Path]) -> tuple[str, bool]:
    """The key with each file's name, size, mtime and ctime; settled when none changed in the last SETTLED_NS."""
    stats = [(str(path), path.stat()) for path in files]
    stamps = [[name, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns] for name, stat in stats]
    newest = max((max(stat.st_mtime_ns, stat.st_ctime_ns) for _, stat in stats), default=0)
    return json.dumps([*key, stamps]), time.time_ns() - newest > SETTLED_NS


class IdentityCache:
    """The identities by stamp in a shard folder (None: none kept): read when made, written by `save` (the driver
    only, so there is one writer)."""

    def __init__(self, folder: Path | None) -> None:
        self.path = None if folder is None else folder / IDENTITY_FILE
        self._entries: dict[str, dict[str, Any]] = {DATASETS: {}, MODELS: {}}
        if self.path is not None and self.path.is_file():
            try:
                read = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                read = {}
            for kind in self._entries:
                self._entries[kind].update(read.get(kind, {}) if isinstance(read, dict) else {})

    def get(self, kind: str, stamp: tuple[str, bool] | None) -> Any:
        """The identity kept for this stamp, or None."""
        return None if stamp is None else self._entries[kind].get(stamp[0])

    def put(self, kind: str, stamp: tuple[str, bool] | None, identity: Any) -> None:
        """Keep an identity for its stamp, when its files have settled (a change to come could keep the stamp)."""
        if stamp is not None and stamp[1]:
            self._entries[kind][stamp[0]] = identity

    def forget(self, settings: ProfileSettings) -> None:
        """Drop a unit's model and dataset entries (it failed, maybe on files changed under an unchanged stamp)."""
        for kind, stamp in ((DATASETS, dataset_stamp(data_key(settings))),
                            (MODELS, model_stamp(settings.model, settings.revision))):
            if stamp is not None:
                self._entries[kind].pop(stamp[0], None)

    def save(self) -> None:
        """Write the entries to the shard folder atomically (nothing without a folder)."""
        if self.path is None:
            return
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{IDENTITY_FILE}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(self._entries, out)
            os.replace(temporary, self.path)
        except BaseException:
            os.unlink(temporary)
            raise
