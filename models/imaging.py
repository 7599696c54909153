"""Conversions between generator outputs and image bytes."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

__all__ = ["to_uint8", "to_png_bytes"]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) outputs in about [-1, 1] -> (N, H, W, 3) uint8 by ``round(clamp((x+1)/2*255))``."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    scaled = ((images.detach().float() + 1) / 2 * 255).clamp(0, 255).round()
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def to_png_bytes(pixels: np.ndarray, compress_level: int = 1) -> bytes:
    """One (H, W, 3) uint8 array -> PNG bytes (fast compression: PNG is lossless at any level)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()
