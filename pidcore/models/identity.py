"""What model a run used, however it was spelt: a local folder's canonical path, or a hub id with the commit its
files came from, plus a fingerprint of the weights, so a run is keyed by the model and not by the spelling."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

# Weights files that unpickle (and so may run code) when loaded: named in errors, never loaded.
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
SAFETENSORS_INDEX = "model.safetensors.index.json"
_INDEX_FILES = ("config.json", SAFETENSORS_INDEX)
# pidcore's cache folder (else $XDG_CACHE_HOME/pidcore, else ~/.cache/pidcore): weights digests, converted models.
CACHE_DIR_ENV = "PIDCORE_CACHE_DIR"
DIGEST_CACHE = "weights-digests.json"
# Weights files from this size on are announced before they are hashed, so a long first wait is explained.
ANNOUNCED_BYTES = 1 << 30
# A file changed less than this long ago is hashed but not cached: an edit of the same size within a filesystem's
# timestamp resolution would leave its size, mtime and ctime as cached.
SETTLED_NS = 2 * 10**9


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
    """A digest of a model folder's config, weights index and every byte of its safetensors files, so weights
    edited anywhere are another model; each file's digest is cached, so only the first run reads the weights."""
    digest = hashlib.blake2b(digest_size=16)
    for name in _INDEX_FILES:
        if (folder / name).is_file():
            digest.update(name.encode() + (folder / name).read_bytes())
    cache_file = _cache_file()
    cached = _read_cache(cache_file) if cache_file is not None else {}
    fresh: dict[str, dict] = {}
    for weights in sorted(folder.glob("*.safetensors")):
        digest.update(weights.name.encode() + _cached_digest(weights, cached, fresh).encode())
    if fresh and cache_file is not None:
        _write_cache(cache_file, fresh)
    return digest.hexdigest()


def hash_file(path: Path) -> str:
    """The blake2b digest of every byte of a file, read in blocks so a large file never sits in memory."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


def _stamp(path: Path) -> list[int]:
    """What changes when a file's bytes do: its size, mtime and ctime (which, unlike mtime, no tool can set back)."""
    status = path.stat()
    return [status.st_size, status.st_mtime_ns, status.st_ctime_ns]


def _cached_digest(path: Path, cached: dict, fresh: dict[str, dict]) -> str:
    """A weights file's digest from the cache when its stamp is unchanged; else hashed now and added to `fresh`
    (unless the file changed while it was read, or so recently that a change to come could keep its stamp)."""
    key, stamp = str(path.resolve()), _stamp(path)
    entry = cached.get(key)
    if isinstance(entry, dict) and entry.get("stamp") == stamp and isinstance(entry.get("digest"), str):
        return entry["digest"]
    if stamp[0] >= ANNOUNCED_BYTES:
        logger.info("hashing %s (%.1f GiB) once; cached for later runs", path, stamp[0] / (1 << 30))
    file_digest = hash_file(path)
    if _stamp(path) == stamp and time.time_ns() - max(stamp[1:]) > SETTLED_NS:
        fresh[key] = {"stamp": stamp, "digest": file_digest}
    return file_digest


def cache_dir() -> Path | None:
    """pidcore's cache folder: $PIDCORE_CACHE_DIR, else $XDG_CACHE_HOME/pidcore, else ~/.cache/pidcore (None where no
    home folder can be found)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    try:
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    except RuntimeError as error:
        logger.debug("no home folder for pidcore's cache (%s)", error)
        return None
    return base / "pidcore"


def _cache_file() -> Path | None:
    """The digest cache's path, in cache_dir() (None without one: weights are then hashed on every run)."""
    folder = cache_dir()
    return None if folder is None else folder / DIGEST_CACHE


def _read_cache(path: Path) -> dict:
    """The cached digests by resolved path; empty where the cache is absent or unreadable (then files are hashed)."""
    try:
        with path.open(encoding="utf-8") as handle:
            cached = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        logger.debug("cannot read the weights digest cache %s (%s); hashing the weights again", path, error)
        return {}
    return cached if isinstance(cached, dict) else {}


def _write_cache(path: Path, fresh: dict[str, dict]) -> None:
    """Add `fresh` to the cache as it is now (other processes may have added to it), drop the files that are gone,
    and replace it atomically; a cache that cannot be written only means hashing again next time."""
    cached = {key: entry for key, entry in _read_cache(path).items() if os.path.exists(key)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{DIGEST_CACHE}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump({**cached, **fresh}, out)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as error:
        logger.debug("cannot write the weights digest cache %s (%s); the next run hashes the weights again", path,
                     error)


def identity_key(identity: dict[str, str]) -> str:
    """The identity as one canonical string for a run's key."""
    return json.dumps(identity, sort_keys=True)
