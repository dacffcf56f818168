"""Image decoding for dataset rows: missing files, bad base64, corrupt or oversized images become skip reasons."""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from pathlib import Path

from PIL import Image

from pidcore.datasets.sample import SkipRow

MAX_PIXELS = 50_000_000
_DATA_URL = re.compile(r"^data:image/[^;,]*;base64,", re.IGNORECASE)
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=\s]+")
_MIN_INLINE_LENGTH = 64


def image_from_bytes(data: bytes) -> Image.Image:
    """Decode an encoded image into a fully loaded RGB image, refusing more than MAX_PIXELS or corrupt data."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise SkipRow(f"image too large: {width}x{height} exceeds {MAX_PIXELS} pixels")
                image.load()
                return image.convert("RGB")
    except Image.DecompressionBombError as error:
        raise SkipRow(f"image too large: {error}") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise SkipRow(f"unreadable image: {type(error).__name__}") from error


def image_from_base64(text: str) -> Image.Image:
    """Decode a base64 image, with or without a data-URL prefix, as MMBench and the paper's JSON store them."""
    payload = "".join(_DATA_URL.sub("", text.strip(), count=1).split())
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise SkipRow("invalid base64 image") from error
    return image_from_bytes(data)


def image_from_file(root: Path, reference: str) -> Image.Image:
    """Read an image file named relative to the image root; a missing file is reported by the name the row gave."""
    try:
        data = (root / reference).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as error:
        raise SkipRow(f"image file not found: {reference}") from error
    except OSError as error:
        raise SkipRow(f"unreadable image: {type(error).__name__}") from error
    return image_from_bytes(data)


def image_from_reference(root: Path, reference: str) -> Image.Image:
    """Decode an image given inline as base64 (data URL, or long base64-only text) or else as a relative path."""
    inline = len(reference) >= _MIN_INLINE_LENGTH and _BASE64_TEXT.fullmatch(reference)
    if _DATA_URL.match(reference) or inline:
        return image_from_base64(reference)
    return image_from_file(root, reference)
