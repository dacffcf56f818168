"""Arrays in BLOB columns, as .npy bytes (no pickle in either direction), and images as PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image

from pidcore.store.schema import MAX_STORED_IMAGE_BYTES


def array_to_blob(array: np.ndarray) -> bytes:
    """A numpy array as .npy bytes, exactly what np.save writes. A plain numeric or boolean array takes its header
    from a cache per (dtype, shape) and its bytes from tobytes(), instead of np.save's per-call header building."""
    array = np.ascontiguousarray(array)
    dtype = array.dtype
    if dtype.kind in _CACHED_KINDS and dtype.metadata is None and getattr(type(dtype), "_legacy", False):
        header = _npy_header(dtype.str, array.shape)
        if header is not None:
            return header + array.tobytes()
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


# Kinds whose .npy header is their dtype's str alone: booleans, integers, floats, complex numbers.
_CACHED_KINDS = frozenset("biufc")


@lru_cache(maxsize=1024)
def _npy_header(descr: str, shape: tuple[int, ...]) -> bytes | None:
    """The version-1.0 .npy header np.save writes for a C-order array of this dtype and shape; None where that
    version cannot hold it (np.save would write a later one)."""
    buffer = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    except ValueError:
        return None
    return buffer.getvalue()


def blob_to_array(blob: bytes) -> np.ndarray:
    """The array stored by array_to_blob (a writable copy). Headers repeat from row to row, so each distinct one is
    parsed once (np.load parses it for every blob: half the time of reading 2 x 2,048 samples)."""
    if blob[:_PREFIX] != _MAGIC_1_0:
        return np.load(io.BytesIO(blob), allow_pickle=False)
    end = _header_end(blob)
    dtype, shape, fortran = _parsed_header(bytes(blob[:end]))
    values = np.frombuffer(blob, dtype, count=int(np.prod(shape)), offset=end)
    return values.reshape(shape, order="F" if fortran else "C").copy()


def stacked_blobs(blobs: Sequence[bytes]) -> np.ndarray | None:
    """np.stack of the blobs' arrays (blob_to_array's), [blob, *shape] in native byte order as np.stack gives it,
    read in one step when every blob holds the same version-1.0 header of a C-order array; None otherwise."""
    first = blobs[0] if blobs else None
    if not isinstance(first, bytes) or first[:_PREFIX] != _MAGIC_1_0:
        return None
    end = _header_end(first)
    dtype, shape, fortran = _parsed_header(first[:end])
    size = len(first)
    if fortran or size == end or size - end != int(np.prod(shape)) * dtype.itemsize:
        return None
    if any(not isinstance(blob, bytes) or len(blob) != size for blob in blobs):
        return None
    table = np.frombuffer(b"".join(blobs), np.uint8).reshape(len(blobs), size)
    if not (table[:, :end] == table[0, :end]).all():
        return None
    values = table[:, end:].copy().view(dtype).reshape((len(blobs), *shape))
    return values.astype(np.result_type(dtype), copy=False)


_MAGIC_1_0 = np.lib.format.magic(1, 0)
_PREFIX = len(_MAGIC_1_0)


def _header_end(blob: bytes) -> int:
    """Where a version-1.0 .npy blob's header ends and its values begin."""
    return _PREFIX + 2 + int.from_bytes(blob[_PREFIX:_PREFIX + 2], "little")


@lru_cache(maxsize=1024)
def _parsed_header(header: bytes) -> tuple[np.dtype, tuple[int, ...], bool]:
    """A version-1.0 .npy header's dtype, shape and order; an object dtype (which would need pickle) is refused."""
    stream = io.BytesIO(header)
    np.lib.format.read_magic(stream)
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    if dtype.hasobject:
        raise ValueError("a stored array holds Python objects, which would need pickle to read; refused")
    return dtype, shape, fortran


def image_to_png(image: Image.Image) -> bytes | None:
    """An image as PNG bytes, lossless; None when they would exceed MAX_STORED_IMAGE_BYTES (the image is not kept)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue() if buffer.tell() <= MAX_STORED_IMAGE_BYTES else None
