"""Helpers shared by the benchmark scripts (run as ``python bench/<script>.py``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch


def timed(fn: Callable[[], object], repeats: int = 5) -> float:
    """Median wall time of ``repeats`` calls, in seconds (medians: these machines are noisy)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def object_labels(segmenter: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                  batch: int = 50) -> np.ndarray:
    """(N, H, W) object label maps of ``images`` in [-1, 1], segmented ``batch`` at a time."""
    with torch.no_grad():
        return np.concatenate([segmenter(images[b:b + batch])[:, 0].cpu().numpy() for b in range(0, len(images), batch)])
