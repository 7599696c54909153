"""Progressive GAN generator, state-dict compatible with the released GAN Dissection checkpoints.

The module tree mirrors gandissect's ``netdissect.proggan``: an ``nn.Sequential`` of blocks named
``layer1 .. layerN`` followed by ``output_{R}x{R}``. Each block normalises its *input* (PixelNorm),
applies a bias-free convolution, then a separate equalised-learning-rate scale and bias (``wscale``).
With these names the released LSUN checkpoints (``layerK.conv.weight``, ``layerK.wscale.b``) load
strictly, and so do the zoo models trained by ``models.train``.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "PixelNorm",
    "WScale",
    "NormConvBlock",
    "NormUpscaleConvBlock",
    "OutputConvBlock",
    "ProgressiveGenerator",
    "sizes_from_state_dict",
    "normalize_state_dict",
    "resolution_for_sizes",
]

PIXELNORM_EPSILON = 1e-8


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector to unit RMS (Karras et al. 2018, section 4.2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt(torch.mean(x * x, dim=1, keepdim=True) + PIXELNORM_EPSILON)


class WScale(nn.Module):
    """Equalised learning rate: scale the (unit-variance) conv output by ``gain/sqrt(fan_in)``, add a bias.

    ``scale`` is a plain float (not saved), exactly as in the released checkpoints; only ``b`` is a
    parameter. ``fan_in`` is the conv's input channel count; the kernel size is folded into ``gain``.
    """

    def __init__(self, in_channels: int, out_channels: int, gain: float) -> None:
        super().__init__()
        self.scale = gain / math.sqrt(in_channels)
        self.b = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.b.view(1, -1, 1, 1)


class NormConvBlock(nn.Module):
    """PixelNorm -> conv(k) -> WScale -> LeakyReLU(0.2); keeps the spatial size."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int) -> None:
        super().__init__()
        self.norm = PixelNorm()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, 1, padding, bias=False)
        self.wscale = WScale(in_channels, out_channels, gain=math.sqrt(2) / kernel_size)
        self.relu = nn.LeakyReLU(negative_slope=0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.wscale(self.conv(self.norm(x))))


class NormUpscaleConvBlock(nn.Module):
    """PixelNorm -> nearest 2x upsample -> conv 3x3 -> WScale -> LeakyReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.norm = PixelNorm()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, 1, padding, bias=False)
        self.wscale = WScale(in_channels, out_channels, gain=math.sqrt(2) / kernel_size)
        self.relu = nn.LeakyReLU(negative_slope=0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.norm(x), scale_factor=2, mode="nearest")
        return self.relu(self.wscale(self.conv(x)))


class OutputConvBlock(nn.Module):
    """PixelNorm -> 1x1 conv to RGB -> WScale(gain 1); optional Hardtanh (off, as in gandissect)."""

    def __init__(self, in_channels: int, tanh: bool = False) -> None:
        super().__init__()
        self.norm = PixelNorm()
        self.conv = nn.Conv2d(in_channels, 3, kernel_size=1, bias=False)
        self.wscale = WScale(in_channels, 3, gain=1.0)
        self.clamp = nn.Hardtanh() if tanh else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clamp(self.wscale(self.conv(self.norm(x))))


def resolution_for_sizes(sizes: Sequence[int]) -> int:
    """Output resolution of a generator with channel list ``[z_dim, ch@4, ch@8, ...]``."""
    return 4 * 2 ** (len(sizes) - 2)


class ProgressiveGenerator(nn.Sequential):
    """ProGAN generator built from ``sizes = [z_dim, ch@4x4, ch@8x8, ..., ch@RxR]``.

    ``forward`` accepts z as (N, z_dim) or (N, z_dim, 1, 1) and returns images in roughly [-1, 1]
    (unclamped unless ``output_tanh``). Resolutions 8 to 1024 are supported.
    """

    def __init__(self, sizes: Sequence[int], output_tanh: bool = False) -> None:
        sizes = [int(s) for s in sizes]
        if len(sizes) < 3:
            raise ValueError(f"sizes needs z_dim and at least two resolutions (4x4, 8x8), got {sizes}")
        if any(s <= 0 for s in sizes):
            raise ValueError(f"channel sizes must be positive, got {sizes}")
        resolution = resolution_for_sizes(sizes)
        if resolution > 1024:
            raise ValueError(f"resolution {resolution} is above the supported 1024")
        blocks: list[tuple[str, nn.Module]] = [
            ("layer1", NormConvBlock(sizes[0], sizes[1], kernel_size=4, padding=3)),
            ("layer2", NormConvBlock(sizes[1], sizes[1], kernel_size=3, padding=1)),
        ]
        for prev, cur in zip(sizes[1:-1], sizes[2:]):
            index = len(blocks) + 1
            blocks.append((f"layer{index}", NormUpscaleConvBlock(prev, cur)))
            blocks.append((f"layer{index + 1}", NormConvBlock(cur, cur, kernel_size=3, padding=1)))
        blocks.append((f"output_{resolution}x{resolution}", OutputConvBlock(sizes[-1], tanh=output_tanh)))
        super().__init__(OrderedDict(blocks))
        self.sizes: tuple[int, ...] = tuple(sizes)
        self.z_dim: int = sizes[0]
        self.resolution: int = resolution

    @property
    def layer_names(self) -> list[str]:
        """Names of the editable blocks, input to output (``layer1`` .. ``layerN``, then the output)."""
        return [name for name, _ in self.named_children()]

    def layer_shape(self, name: str) -> tuple[int, int, int]:
        """(channels, height, width) of a named block's output."""
        if name.startswith("output_"):
            return (3, self.resolution, self.resolution)
        match = re.fullmatch(r"layer(\d+)", name)
        if not match or name not in self._modules:
            raise KeyError(f"unknown layer {name!r}; layers are {', '.join(self.layer_names)}")
        k = int(match.group(1))
        level = (k - 1) // 2  # layer1, layer2 -> 4x4; layer3, layer4 -> 8x8; ...
        return (self.sizes[level + 1], 4 * 2**level, 4 * 2**level)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        if z.dim() != 4 or z.shape[1] != self.z_dim or z.shape[2:] != (1, 1):
            raise ValueError(f"z must have shape (N, {self.z_dim}) or (N, {self.z_dim}, 1, 1), got {tuple(z.shape)}")
        return super().forward(z)

    def forward_from(self, layer: str, x: torch.Tensor) -> torch.Tensor:
        """Run only the blocks after ``layer`` on its output ``x`` (cached-activation editing)."""
        names = self.layer_names
        if layer not in names:
            raise KeyError(f"unknown layer {layer!r}; layers are {', '.join(names)}")
        for name in names[names.index(layer) + 1 :]:
            x = self._modules[name](x)
        return x

    def forward_to(self, layer: str, z: torch.Tensor) -> torch.Tensor:
        """Run the blocks up to and including ``layer``; returns that layer's output."""
        names = self.layer_names
        if layer not in names:
            raise KeyError(f"unknown layer {layer!r}; layers are {', '.join(names)}")
        x = z[:, :, None, None] if z.dim() == 2 else z
        for name in names[: names.index(layer) + 1]:
            x = self._modules[name](x)
        return x


_OLD_FEATURE_KEY = re.compile(r"features\.(\d+)\.(conv\.weight|wscale\.b)")
_LAYER_KEY = re.compile(r"layer(\d+)\.(conv\.weight|wscale\.b)")
_OUTPUT_KEY = re.compile(r"output_(\d+)x(\d+)\.(conv\.weight|wscale\.b)")


def normalize_state_dict(state: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Bring any accepted checkpoint layout to the ``layerK.* / output_RxR.*`` key format.

    Accepts a ``{"state_dict": ...}`` wrapper and the old ``features.N.* / output.*`` keys.
    Raises ``ValueError`` describing what was found when the mapping is not a ProGAN generator.
    """
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    tensors: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(f"entry {key!r} is not a named tensor")
        tensors[key] = value
    if "features.0.conv.weight" in tensors:
        converted: dict[str, torch.Tensor] = {}
        old_output = {}
        for key, value in tensors.items():
            match = _OLD_FEATURE_KEY.fullmatch(key)
            if match:
                converted[f"layer{int(match.group(1)) + 1}.{match.group(2)}"] = value
            elif key in ("output.conv.weight", "output.wscale.b"):
                old_output[key.split(".", 1)[1]] = value
            else:
                raise ValueError(f"unexpected key {key!r} in an old-format (features.N) checkpoint")
        layers = sum(1 for k in converted if k.endswith("conv.weight"))
        resolution = 4 * 2 ** (layers // 2 - 1)
        for suffix, value in old_output.items():
            converted[f"output_{resolution}x{resolution}.{suffix}"] = value
        tensors = converted
    unknown = [k for k in tensors if not (_LAYER_KEY.fullmatch(k) or _OUTPUT_KEY.fullmatch(k))]
    if unknown:
        shown = ", ".join(sorted(unknown)[:5])
        raise ValueError(f"keys that no ProGAN generator has: {shown}")
    return tensors


def sizes_from_state_dict(state: Mapping[str, torch.Tensor]) -> list[int]:
    """Channel list ``[z_dim, ch@4, ch@8, ...]`` read from normalised generator weights."""
    if "layer1.conv.weight" not in state:
        raise ValueError("no 'layer1.conv.weight': not a ProGAN generator state dict")
    weights: list[torch.Tensor] = []
    k = 1
    while f"layer{k}.conv.weight" in state:
        weights.append(state[f"layer{k}.conv.weight"])
        k += 1
    if any(w.dim() != 4 for w in weights):
        raise ValueError("conv weights must be 4-dimensional")
    if len(weights) < 4 or len(weights) % 2:
        raise ValueError(f"expected an even number (>= 4) of layerK blocks, found {len(weights)}")
    return [int(weights[0].shape[1])] + [int(w.shape[0]) for w in weights[0::2]]
