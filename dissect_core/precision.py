"""Which floating-point type to compute in: bfloat16 where the hardware has it natively."""

from __future__ import annotations

import torch

__all__ = ["resolve_precision"]


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """``auto`` -> bfloat16 where the hardware computes it natively (CUDA; CPUs with AMX or
    AVX512-BF16, through oneDNN), else float32."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16
    supported = device.type == "cpu" and torch.backends.mkldnn.is_available()
    try:
        supported = supported and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        supported = False
    return torch.bfloat16 if supported else torch.float32
