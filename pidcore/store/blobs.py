"""Arrays in BLOB columns, as .npy bytes: no pickle in either direction."""

from __future__ import annotations

import io

import numpy as np


def array_to_blob(array: np.ndarray) -> bytes:
    """A numpy array as .npy bytes."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def blob_to_array(blob: bytes) -> np.ndarray:
    """The array stored by array_to_blob."""
    return np.load(io.BytesIO(blob), allow_pickle=False)
