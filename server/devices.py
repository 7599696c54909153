"""Choosing the torch device from a user string (``auto`` prefers CUDA when present)."""

from __future__ import annotations

import re

import torch

__all__ = ["resolve_device"]


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available else ``cpu``; ``cpu``/``cuda``/``cuda:N`` checked for existence."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if not match:
        raise ValueError(f"device {spec!r}: expected auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ValueError(f"device {spec!r}: CUDA is not available on this machine")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", index)
