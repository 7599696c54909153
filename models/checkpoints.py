"""Reading and writing weight files without ever executing code from them.

Two formats are accepted, recognised by their bytes (not their file name): PyTorch files
(zip or legacy pickle), always read with ``weights_only=True``, and safetensors.
Every failure is a ``CheckpointError`` that names the file and says what was expected.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import torch

from models.proggan import ProgressiveGenerator, normalize_state_dict, sizes_from_state_dict

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)

__all__ = [
    "CheckpointError",
    "read_weights",
    "load_generator",
    "save_weights",
    "file_sha256",
]


def for_inference(module: ModuleT) -> ModuleT:
    """Eval mode, frozen, channels-last conv weights.

    Channels-last roughly halves the convolution time of our models on CPU (oneDNN's blocked
    kernels; ``bench/dissect_speed.py``) and is neutral or better on GPU. Outputs agree with the
    default layout to float rounding (~1e-5); every loader uses this so all consumers match.
    """
    module.eval().requires_grad_(False).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return module


class CheckpointError(ValueError):
    """A weight file could not be used; the message names the file and what was expected."""


def _looks_like_safetensors(head: bytes) -> bool:
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 2 <= header_len < 100_000_000 and head[8:9] == b"{"


def read_weights(path: str | os.PathLike[str]) -> dict[str, object]:
    """Read a mapping of names to tensors from a PyTorch or safetensors file, safely."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    with path.open("rb") as handle:
        head = handle.read(16)
    if not head:
        raise CheckpointError(f"{path}: file is empty; expected a PyTorch or safetensors weight file")
    if _looks_like_safetensors(head):
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as exc:  # safetensors raises several unrelated types
            raise CheckpointError(f"{path}: damaged safetensors file ({exc})") from exc
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):
        raise CheckpointError(
            f"{path}: not a weight file (expected a PyTorch .pth/.pt or a .safetensors file)"
        )
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            reason = "it contains Python objects other than tensors, which are never loaded"
        raise CheckpointError(f"{path}: cannot read as a PyTorch weight file: {reason}") from exc
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path}: holds a {type(loaded).__name__}, expected a mapping of tensors")
    return dict(loaded)


def load_generator(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    output_tanh: bool = False,
) -> ProgressiveGenerator:
    """Build a ``ProgressiveGenerator`` whose shape is read from the file, and load it strictly."""
    raw = read_weights(path)
    try:
        state = normalize_state_dict(raw)
        sizes = sizes_from_state_dict(state)
        generator = ProgressiveGenerator(sizes, output_tanh=output_tanh)
        state = {k: v.to(dtype) for k, v in state.items()}
        generator.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: not a ProGAN generator checkpoint (expected keys layerK.conv.weight, "
            f"layerK.wscale.b, output_RxR.*): {first}"
        ) from exc
    return for_inference(generator.to(device=device, dtype=dtype))


def save_weights(
    state: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Write tensors atomically: safetensors for ``*.safetensors``, a PyTorch zip file otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
            save_file(tensors, tmp_name, metadata=meta or None)
        else:
            torch.save(tensors, tmp_name)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (cache keys and model cards)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
