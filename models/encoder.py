"""An encoder from pictures to a generator's edit layer (GANPaint Studio's first step).

ganseeing's ``make_over5_resnet``, sized for 2 CPU cores: a small ResNet (one basic block per
stride-2 stage, as many stages as halve the picture down to the layer's grid) whose pooling head is
a 1x1 convolution to the layer's channels followed by LeakyReLU(0.2), the same non-linearity the
ProGAN layer ends in. It is trained on generated pairs only (``models.train.encoder``): the
generator's own layer activations are the targets, so no real picture is ever needed.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

from models.proggan import ProgressiveGenerator

__all__ = ["LayerEncoder", "load_encoder_file"]


class _BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convolutions with batch norm, and a projected shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class LayerEncoder(nn.Module):
    """(N, 3, S, S) pictures in [-1, 1] -> (N, C, s, s) activations of the generator's edit layer."""

    def __init__(self, out_channels: int = 512, out_size: int = 8, input_size: int = 128, width: int = 32,
                 max_width: int = 256) -> None:
        super().__init__()
        stages = int(round(math.log2(input_size / out_size)))
        if stages < 1 or out_size * 2 ** stages != input_size:
            raise ValueError(f"input {input_size} px must be the layer's {out_size} cells times a power of two")
        self.out_channels, self.out_size, self.input_size, self.width = out_channels, out_size, input_size, width
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        blocks = []
        cin = width
        for i in range(stages):
            cout = min(width * 2 ** (i + 1), max_width)
            blocks += [_BasicBlock(cin, cout, 2), _BasicBlock(cout, cout, 1)] if i == stages - 1 else [
                _BasicBlock(cin, cout, 2)]
            cin = cout
        self.stages = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Conv2d(cin, out_channels, 1), nn.LeakyReLU(0.2))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != self.input_size or images.shape[-2] != self.input_size:
            raise ValueError(f"the encoder reads {self.input_size} px pictures, got {tuple(images.shape[-2:])}")
        return self.head(self.stages(self.stem(images)))

    def architecture(self) -> dict[str, int | str]:
        """What a model card records to rebuild this network."""
        return {"class": "models.encoder.LayerEncoder", "out_channels": self.out_channels, "out_size": self.out_size,
                "input": self.input_size, "width": self.width,
                "parameters": sum(p.numel() for p in self.parameters())}


def load_encoder_file(path: str | os.PathLike[str], generator: ProgressiveGenerator, layer: str,
                      device: str = "cpu") -> LayerEncoder:
    """An encoder's weights (a ``ganpaint train encoder`` run's ``model.safetensors``) for ``generator``;
    its width is read from the weights, its shape from the generator's layer."""
    from models.checkpoints import CheckpointError, for_inference, read_weights

    state = read_weights(path)
    stem = state.get("stem.0.weight")
    if not isinstance(stem, torch.Tensor):
        raise CheckpointError(f"{path}: not an encoder (no stem.0.weight)")
    channels, size, _ = generator.layer_shape(layer)
    encoder = LayerEncoder(channels, size, generator.resolution, int(stem.shape[0]))
    try:
        encoder.load_state_dict({k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
                                 for k, v in state.items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: does not fit an encoder of {layer} ({str(exc).splitlines()[0]})") from exc
    return for_inference(encoder.to(device))
