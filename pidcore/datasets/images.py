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

import numpy as np
from PIL import Image, ImageOps

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
    """Decode an encoded image into a fully loaded RGB image, refusing more than MAX_PIXELS (checked on the header,
    before decoding) or corrupt data. Turned upright by its EXIF orientation as transformers' `load_image` does
    (`ImageOps.exif_transpose`), then converted by `faithful_rgb` (alpha dropped, 16-bit scaled); with `keep_rgba`
    an RGBA image stays RGBA, for a reader that needs its alpha (the paper's images, see `paper_rgb`)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise SkipRow(f"image too large: {width}x{height} exceeds {MAX_PIXELS} pixels")
                image.load()
                _upright(image)
                return image if keep_rgba and image.mode == "RGBA" else faithful_rgb(image)
    except Image.DecompressionBombError as error:
        raise SkipRow(f"image too large: {error}") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise SkipRow(f"unreadable image: {type(error).__name__}") from error


def _upright(image: Image.Image) -> None:
    """Apply the EXIF orientation in place, as `transformers.image_utils.load_image` does (`exif_transpose`, then
    its `convert("RGB")`); EXIF too damaged to read skips the row with its reason instead of a traceback."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception as error:  # noqa: BLE001 - any failure inside a hostile EXIF block is that row's skip reason
        raise SkipRow(f"unreadable image EXIF: {type(error).__name__}") from error


_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def faithful_rgb(image: Image.Image) -> Image.Image:
    """RGB keeping every level PIL decoded. 16-bit greyscale ("I;16*") is scaled to 8 bits by `value >> 8` (the high
    byte, as PIL itself reduces 16-bit RGB and grey+alpha PNGs), never clipped. "I" (32-bit integers: 16-bit PGM/PPM,
    which PIL rescales to 0-65535, and integer TIFFs): a PPM or values within 0-65535 (some above 255) `>> 8`, values
    within 0-255 as they are, any other range stretched linearly from its minimum-maximum to 0-255. "F" (floats):
    within 0-1 times 255, within 0-255 as they are (rounded), any other range stretched; non-finite values read 0.
    "La" (premultiplied) goes through "LA". Every other mode ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa",
    "RGBX", "CMYK", "YCbCr", "LAB", "HSV") is PIL's own `convert("RGB")`: alpha and palette transparency dropped,
    CMYK and YCbCr by PIL's formulas (no ICC profile applied, as transformers' `load_image` does not)."""
    if image.mode == "La":
        return image.convert("LA").convert("RGB")
    if image.mode not in _SIXTEEN_BIT | {"I", "F"}:
        return image.convert("RGB")
    values = np.asarray(image)
    if image.mode in _SIXTEEN_BIT:
        grey = values >> 8
    elif image.mode == "I":
        grey = _integer_grey(values, sixteen_bit=image.format == "PPM")
    else:
        grey = _float_grey(values)
    return Image.fromarray(np.ascontiguousarray(grey, dtype=np.uint8)).convert("RGB")


def _integer_grey(values: np.ndarray, sixteen_bit: bool) -> np.ndarray:
    """8-bit levels of a mode "I" image (see `faithful_rgb`)."""
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if sixteen_bit or (low >= 0 and 255 < high <= 65535):
        return np.clip(values, 0, 65535) >> 8
    if low >= 0 and high <= 255:
        return values
    return _stretched(values.astype(np.float64), low, high)


def _float_grey(values: np.ndarray) -> np.ndarray:
    """8-bit levels of a mode "F" image (see `faithful_rgb`)."""
    values = np.where(np.isfinite(values), values, 0.0).astype(np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low >= 0 and high <= 1:
        return np.rint(values * 255)
    if low >= 0 and high <= 255:
        return np.rint(values)
    return _stretched(values, low, high)


def _stretched(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Values mapped linearly from [low, high] to [0, 255]; a constant image keeps its level within 0-255."""
    if high == low:
        return np.full(values.shape, min(max(low, 0), 255))
    return np.rint((values - low) * (255 / (high - low)))


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
