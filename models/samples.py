"""Sample ids -> latent vectors, identical to the original GANPaint demo's ids.

The z for sample ``i`` is row ``i`` of ``numpy.random.RandomState(seed).standard_normal(n * z_dim)``
reshaped to ``(n, z_dim)``, for any ``n > i``: the stream is the same however long it is drawn.
The legacy normal generator consumes a variable number of uniforms per value, so rows cannot be
jumped to directly; instead the generator state is remembered every ``CHUNK_ROWS`` rows, which
makes any id cost at most one chunk of draws after the first visit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

__all__ = ["MAX_SAMPLE_ID", "CHUNK_ROWS", "z_for_ids", "z_tensor", "check_sample_id"]

MAX_SAMPLE_ID = 999_999
"""Largest accepted id: reaching it draws 1e6 * z_dim normals once (about 10 s for z_dim 512)."""

CHUNK_ROWS = 1024

_lock = threading.Lock()
_checkpoints: dict[tuple[int, int], list[Any]] = {}


def check_sample_id(sample_id: int) -> int:
    """Return ``sample_id`` if it is a valid id, else raise ``ValueError`` saying the range."""
    if isinstance(sample_id, bool) or not isinstance(sample_id, (int, np.integer)):
        raise ValueError(f"sample id must be an integer, got {sample_id!r}")
    if not 0 <= int(sample_id) <= MAX_SAMPLE_ID:
        raise ValueError(f"sample id must be between 0 and {MAX_SAMPLE_ID}, got {sample_id}")
    return int(sample_id)


def _state_at_chunk(seed: int, z_dim: int, chunk: int) -> tuple:
    """RandomState state positioned at the first row of ``chunk`` (memoised per seed and z_dim)."""
    states = _checkpoints.setdefault((seed, z_dim), [])
    if not states:
        states.append(np.random.RandomState(seed).get_state())
    rng = np.random.RandomState()
    while len(states) <= chunk:
        rng.set_state(states[-1])
        rng.standard_normal(CHUNK_ROWS * z_dim)
        states.append(rng.get_state())
    return states[chunk]


def z_for_ids(ids: Iterable[int], z_dim: int = 512, seed: int = 1) -> np.ndarray:
    """Latents (len(ids), z_dim) float64 for the given sample ids of the ``seed`` stream."""
    ids = [check_sample_id(i) for i in ids]
    out = np.empty((len(ids), z_dim), dtype=np.float64)
    by_chunk: dict[int, list[int]] = {}
    for position, sample_id in enumerate(ids):
        by_chunk.setdefault(sample_id // CHUNK_ROWS, []).append(position)
    rng = np.random.RandomState()
    for chunk, positions in sorted(by_chunk.items()):
        with _lock:
            state = _state_at_chunk(seed, z_dim, chunk)
        rng.set_state(state)
        last = max(ids[p] for p in positions) % CHUNK_ROWS
        rows = rng.standard_normal((last + 1) * z_dim).reshape(last + 1, z_dim)
        for p in positions:
            out[p] = rows[ids[p] % CHUNK_ROWS]
    return out


def z_tensor(
    ids: Iterable[int], z_dim: int = 512, seed: int = 1, device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``z_for_ids`` as a tensor on ``device``."""
    return torch.from_numpy(z_for_ids(ids, z_dim, seed)).to(device=device, dtype=dtype)
