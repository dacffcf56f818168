"""What model a run used, however it was spelt: a local folder's canonical path, or a hub id with the commit its
files came from, plus a fingerprint of the weights, so a run is keyed by the model and not by the spelling."""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from pathlib import Path

logger = logging.getLogger(__name__)

# Bytes read from each weights file, evenly spread over its tensor data, besides its header: enough to tell two
# checkpoints of one architecture apart (their headers are the same) without reading gigabytes.
SAMPLED_CHUNKS, CHUNK_BYTES = 16, 1 << 16
_INDEX_FILES = ("config.json", "model.safetensors.index.json")


def model_identity(model: str, revision: str | None = None) -> dict[str, str]:
    """{"path", "weights"} for a local folder; {"hub", "revision", "weights"} for a hub id whose files are in the
    local cache ("weights" empty where they are not)."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        resolved = folder.resolve()
        return {"path": str(resolved), "weights": weights_fingerprint(resolved)}
    snapshot = _cached_snapshot(model, revision)
    if snapshot is None:
        logger.warning("%s: no local copy of its files to fingerprint; the run is keyed by the id and revision only",
                       model)
        return {"hub": model, "revision": revision or "main", "weights": ""}
    return {"hub": model, "revision": snapshot.name, "weights": weights_fingerprint(snapshot)}


def _cached_snapshot(model: str, revision: str | None) -> Path | None:
    """The local cache's snapshot folder of a hub id at a revision (its name is the commit), without the network."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, revision=revision, local_files_only=True))
    except (OSError, ValueError):  # not cached (LocalEntryNotFoundError), or not a hub id (HFValidationError)
        return None


def weights_fingerprint(folder: Path) -> str:
    """A digest of a model folder's config, weights index and, per safetensors file, its size, header and sampled
    tensor bytes."""
    digest = hashlib.blake2b(digest_size=16)
    for name in _INDEX_FILES:
        if (folder / name).is_file():
            digest.update(name.encode() + (folder / name).read_bytes())
    for weights in sorted(folder.glob("*.safetensors")):
        digest.update(weights.name.encode())
        _add_safetensors(digest, weights)
    return digest.hexdigest()


def _add_safetensors(digest: "hashlib.blake2b", path: Path) -> None:
    """Feed a safetensors file's size, header and SAMPLED_CHUNKS chunks of its tensor data to `digest`."""
    size = path.stat().st_size
    digest.update(str(size).encode())
    with path.open("rb") as handle:
        length_bytes = handle.read(8)
        if len(length_bytes) < 8:
            return
        (header_length,) = struct.unpack("<Q", length_bytes)
        header_length = min(header_length, max(size - 8, 0))
        digest.update(handle.read(header_length))
        start = 8 + header_length
        span = max(size - start - CHUNK_BYTES, 0)
        for index in range(SAMPLED_CHUNKS):
            handle.seek(start + span * index // max(SAMPLED_CHUNKS - 1, 1))
            digest.update(handle.read(CHUNK_BYTES))


def identity_key(identity: dict[str, str]) -> str:
    """The identity as one canonical string for a run's key."""
    return json.dumps(identity, sort_keys=True)
