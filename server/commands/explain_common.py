"""Helpers shared by the classifier-explaining commands (featviz, topk, netdissect)."""

from __future__ import annotations

import torch

from models.checkpoints import CheckpointError
from models.zoo import ZooError, load_model
from server.commands import CommandError
from server.devices import resolve_device


def load_classifier(model_id: str, device_spec: str) -> tuple[torch.nn.Module, str]:
    try:
        device = str(resolve_device(device_spec))
        return load_model(model_id, device), device
    except (ZooError, CheckpointError, ValueError) as exc:
        raise CommandError(str(exc)) from exc


def check_layers(model: torch.nn.Module, layers: list[str]) -> None:
    names = {name for name, _ in model.named_modules() if name}
    unknown = [layer for layer in layers if layer not in names]
    if unknown:
        top = sorted(n for n in names if n.count(".") <= 1)
        raise CommandError(f"unknown layer(s) {unknown}; layers include {', '.join(top)}")


def check_units(model: torch.nn.Module, layer: str, units: list[int] | None) -> None:
    """Every unit must be a channel of ``layer`` (found by running one small image)."""
    if not units:
        return
    from dissect_core.nethook import Trace

    device = next(model.parameters()).device
    with torch.no_grad(), Trace(model, [layer], stop=True) as trace:
        model(torch.zeros(1, 3, 64, 64, device=device))
    channels = trace[layer].shape[1]
    bad = [u for u in units if not 0 <= u < channels]
    if bad:
        raise CommandError(f"--unit {bad[0]} is out of range: {layer} has units 0..{channels - 1}")
