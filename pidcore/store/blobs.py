"""Arrays in BLOB columns, as .npy bytes (no pickle in either direction), and images as PNG bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pidcore.store.schema import MAX_STORED_IMAGE_BYTES


def array_to_blob(array: np.ndarray) -> bytes:
    """A numpy array as .npy bytes."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def blob_to_array(blob: bytes) -> np.ndarray:
    """The array stored by array_to_blob."""
    return np.load(io.BytesIO(blob), allow_pickle=False)


def image_to_png(image: Image.Image) -> bytes | None:
    """An image as PNG bytes, lossless; None when they would exceed MAX_STORED_IMAGE_BYTES (the image is not kept)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue() if buffer.tell() <= MAX_STORED_IMAGE_BYTES else None
