"""Pictures from clients, decoded safely: PNG or JPEG only, bounded in pixels before decoding.

The pixel count is read from the header before any pixel is decoded, so a decompression bomb (a small
file that claims a huge picture) is refused without the memory it would take; a large JPEG is decoded
at a fraction of its size (``draft``); the result is centre-cropped to a square and resized.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from server.api.errors import ApiError

__all__ = ["decode_upload", "MAX_PIXELS", "MAX_SIDE"]

MAX_PIXELS = 4096 * 4096
MAX_SIDE = 8192


def decode_upload(data: bytes, size: int) -> np.ndarray:
    """Bytes -> (size, size, 3) uint8, refusing non-images, other formats and too many pixels."""
    try:
        opened = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ApiError(413, "too_many_pixels", f"the image is over the limit of {MAX_PIXELS:,} pixels") from None
    except (UnidentifiedImageError, OSError):
        raise ApiError(422, "not_an_image", "the upload is not a PNG or JPEG image") from None
    if opened.format not in ("PNG", "JPEG"):
        raise ApiError(422, "unsupported_format", f"{opened.format} images are not accepted; send PNG or JPEG")
    width, height = opened.size
    if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
        raise ApiError(413, "too_many_pixels", f"{width}x{height} is over the limit of {MAX_PIXELS:,} pixels")
    if opened.format == "JPEG":
        opened.draft("RGB", (2 * size, 2 * size))  # decode a large photo at a fraction of its size
    try:
        image = opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        raise ApiError(422, "not_an_image", "the image data is damaged") from None
    width, height = image.size  # a JPEG's draft decode is smaller than its header says
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)
