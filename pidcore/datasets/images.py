"""Image decoding for dataset rows: missing files, non-files, bad base64, corrupt or oversized images become skip
reasons."""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import stat
import warnings
from pathlib import Path

from PIL import Image

from pidcore.datasets.sample import SkipRow

MAX_PIXELS = 50_000_000
# An encoded image (a file, or base64 once decoded) larger than this is skipped before it is read or decoded.
MAX_IMAGE_BYTES = 64 * 1024 * 1024
_NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
_DATA_URL = re.compile(r"^data:image/[^;,]*;base64,", re.IGNORECASE)
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=\s]+")
_MIN_INLINE_LENGTH = 64


def image_from_bytes(data: bytes, keep_rgba: bool = False) -> Image.Image:
    """Decode an encoded image into a fully loaded RGB image, refusing more than MAX_PIXELS or corrupt data.
    Other modes are converted with `convert("RGB")` (alpha dropped); with `keep_rgba` an RGBA image stays RGBA, for
    a reader that needs its alpha (the paper's images, see `paper_rgb`)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise SkipRow(f"image too large: {width}x{height} exceeds {MAX_PIXELS} pixels")
                image.load()
                return image if keep_rgba and image.mode == "RGBA" else image.convert("RGB")
    except Image.DecompressionBombError as error:
        raise SkipRow(f"image too large: {error}") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise SkipRow(f"unreadable image: {type(error).__name__}") from error


def paper_rgb(image: Image.Image) -> Image.Image:
    """qwen_vl_utils 0.0.10's `to_rgb`, which the paper's Qwen scripts apply to a base64 image decoded with its own
    mode: an RGBA image pasted on white through its alpha channel; any other mode `convert("RGB")`."""
    if image.mode == "RGBA":
        white = Image.new("RGB", image.size, (255, 255, 255))
        white.paste(image, mask=image.split()[3])
        return white
    return image.convert("RGB")


def image_from_base64(text: str, keep_rgba: bool = False) -> Image.Image:
    """Decode a base64 image, with or without a data-URL prefix, as MMBench and the paper's JSON store them;
    refused unread when its decoded size would exceed MAX_IMAGE_BYTES. `keep_rgba`: see `image_from_bytes`."""
    payload = "".join(_DATA_URL.sub("", text.strip(), count=1).split())
    _check_size(len(payload) // 4 * 3, "base64 image")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise SkipRow("invalid base64 image") from error
    return image_from_bytes(data, keep_rgba)


def image_from_file(root: Path, reference: str) -> Image.Image:
    """Read an image file named relative to the image root; a missing file is reported by the name the row gave."""
    try:
        data = _regular_file_bytes(root / reference, reference)
    except (FileNotFoundError, NotADirectoryError) as error:
        raise SkipRow(f"image file not found: {reference}") from error
    except OSError as error:
        raise SkipRow(f"unreadable image: {type(error).__name__}") from error
    return image_from_bytes(data)


def _regular_file_bytes(path: Path, reference: str) -> bytes:
    """The bytes of a regular file of at most MAX_IMAGE_BYTES, its kind and size checked before any byte is read:
    /dev/zero would fill memory and a FIFO would block forever. Checked by path before opening (opening some
    devices acts on them) and again on the opened file (the path may have been swapped in between)."""
    _check_regular(os.stat(path), reference)
    with os.fdopen(os.open(path, _OPEN_FLAGS), "rb") as handle:
        status = os.fstat(handle.fileno())
        _check_regular(status, reference)
        _check_size(status.st_size, reference)
        data = handle.read(MAX_IMAGE_BYTES + 1)
    _check_size(len(data), reference)
    return data


def _check_regular(status: os.stat_result, reference: str) -> None:
    """Refuse anything but a regular file (symbolic links are followed), naming what it is."""
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in _NOT_REGULAR if test(status.st_mode)), "not a file")
        raise SkipRow(f"image is not a regular file: {reference} is {kind}")


def _check_size(size: int, what: str) -> None:
    """Refuse an encoded image over MAX_IMAGE_BYTES before reading or decoding it."""
    if size > MAX_IMAGE_BYTES:
        raise SkipRow(f"image too large: {what} has {size} bytes, over the {MAX_IMAGE_BYTES}-byte limit")


def image_from_reference(root: Path, reference: str, paper: bool = False) -> Image.Image:
    """Decode an image given inline as base64 (data URL, or long base64-only text) or else as a relative path.
    `paper`: as the paper's scripts read images, a base64 RGBA image keeps its alpha (qwen_vl_utils composites it on
    white later) while a file's alpha is dropped (`Image.open(path).convert("RGB")`); otherwise alpha is dropped."""
    inline = len(reference) >= _MIN_INLINE_LENGTH and _BASE64_TEXT.fullmatch(reference)
    if _DATA_URL.match(reference) or inline:
        return image_from_base64(reference, keep_rgba=paper)
    return image_from_file(root, reference)
