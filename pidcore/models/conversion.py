"""Checkpoints transformers cannot load (remote-code model types) converted, once, into a native family's folder that
pidcore loads as any other: kept in pidcore's cache under the source weights' fingerprint, so a changed checkpoint is
converted again and an unchanged one never."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from pidcore.models.adapters import CONVERTED
from pidcore.models.identity import cache_dir, weights_fingerprint

logger = logging.getLogger(__name__)

CONVERTER_VERSION = "1"  # part of each converted folder's name: a changed converter writes new folders
# Only these files of a hub checkpoint are fetched for a conversion (never pickled weights, never code).
SOURCE_FILES = ["*.json", "*.safetensors", "tokenizer.model", "*.txt"]


def native_folder(model_id: str, model_type: str, revision: str | None = None) -> Path:
    """The native folder of the `model_type` checkpoint `model_id` (a local folder, or a hub id at `revision`),
    converted into pidcore's cache the first time it is asked for."""
    if model_type not in CONVERTED:
        raise ValueError(f"{model_id} is a {model_type!r} checkpoint, which pidcore does not convert")
    source = _source_folder(model_id, revision)
    base = cache_dir()
    if base is None:
        raise ValueError(f"converting {model_id} needs a cache folder: set PIDCORE_CACHE_DIR")
    target = base / "converted" / f"{model_type}-{weights_fingerprint(source)}-v{CONVERTER_VERSION}"
    if not (target / "config.json").is_file():
        _convert(CONVERTED[model_type].convert, source, target)
    return target


def _source_folder(model_id: str, revision: str | None) -> Path:
    """A local folder as it is; a hub id's config, tokenizer and safetensors files fetched (or found in the cache)."""
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        return folder.resolve()
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model_id, revision=revision, allow_patterns=SOURCE_FILES))


def _convert(converter: Callable[[Path, Path], Path], source: Path, target: Path) -> None:
    """Convert into a fresh folder beside `target`, then move it into place, so an interrupted conversion leaves
    nothing a later run would take for a finished one."""
    logger.warning("converting %s into a native folder, once: %s (this reads every weight)", source, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        converter(source, partial)
        os.replace(partial, target)
    except OSError as error:
        if not (target / "config.json").is_file():  # another process that finished first is fine
            raise ValueError(f"cannot write the converted folder {target}: {error}") from error
    finally:
        shutil.rmtree(partial, ignore_errors=True)
