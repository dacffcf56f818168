"""The image preparation of the paper's Qwen-VL scripts, for the `images` probe convention.

The scripts pass each image through qwen_vl_utils 0.0.10's `process_vision_info` (RGBA composited on white, other
modes converted to RGB: `pidcore.datasets.images.paper_rgb`; then resized with PIL's default filter to multiples of
28 pixels a side within 4-16384 28x28 squares), and then bound the processor at 256-1280 28x28 squares
(`qwen2_small_embed.py` lines 81-84, 327).
Written from that package's documented behaviour; nothing of it is imported.
"""

from __future__ import annotations

import math

from PIL import Image

from pidcore.datasets.images import paper_rgb

QWEN_UTILS_FACTOR = 28
QWEN_UTILS_MIN_PIXELS = 4 * 28 * 28
QWEN_UTILS_MAX_PIXELS = 16384 * 28 * 28
QWEN_UTILS_MAX_RATIO = 200
# The processor bounds the paper's Qwen scripts pass to AutoProcessor.from_pretrained.
PAPER_QWEN_MIN_PIXELS = 256 * 28 * 28
PAPER_QWEN_MAX_PIXELS = 1280 * 28 * 28
PAPER_QWEN_PIXEL_BOUNDS = (PAPER_QWEN_MIN_PIXELS, PAPER_QWEN_MAX_PIXELS)


def qwen_utils_image(image: Image.Image) -> Image.Image:
    """The image as qwen_vl_utils hands it to the processor: RGB (RGBA on white) at a size of multiples of 28."""
    rgb = paper_rgb(image)
    height, width = smart_resize(rgb.height, rgb.width)
    return rgb.resize((width, height))


def smart_resize(height: int, width: int, factor: int = QWEN_UTILS_FACTOR, min_pixels: int = QWEN_UTILS_MIN_PIXELS,
                 max_pixels: int = QWEN_UTILS_MAX_PIXELS) -> tuple[int, int]:
    """Height and width rounded to multiples of `factor`, scaled into [min_pixels, max_pixels] keeping the ratio."""
    if max(height, width) / min(height, width) > QWEN_UTILS_MAX_RATIO:
        raise ValueError(f"image ratio {max(height, width) / min(height, width):.0f} exceeds "
                         f"{QWEN_UTILS_MAX_RATIO}, which qwen_vl_utils refuses")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar
