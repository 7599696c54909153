"""Shared fixtures: small ProGAN checkpoints in the released formats, a small random generator to dissect."""

from __future__ import annotations

import math
from pathlib import Path

# anyio (a pytest plugin, so pytest rewrites its modules on import) loads its file module lazily, on the
# first FileResponse; done on a server thread while another thread compiles, CPython 3.11.7's parser
# can fail with "AST constructor recursion depth mismatch". Importing it here, once, avoids the race.
import anyio._core._fileio  # noqa: F401
import pytest
import torch

from models.proggan import ProgressiveGenerator


def released_state_dict(sizes: list[int], seed: int = 0, old_format: bool = False) -> dict[str, torch.Tensor]:
    """Random weights laid out exactly as the released GAN Dissection checkpoints store them.

    Built from the published key/shape table, not from ``models.proggan``, so that a mismatch in
    the module tree shows up as a load failure.
    """
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    convs = [(sizes[0], sizes[1], 4), (sizes[1], sizes[1], 3)]
    for prev, cur in zip(sizes[1:-1], sizes[2:]):
        convs += [(prev, cur, 3), (cur, cur, 3)]
    for k, (cin, cout, ksize) in enumerate(convs, start=1):
        prefix = f"features.{k - 1}" if old_format else f"layer{k}"
        state[f"{prefix}.conv.weight"] = torch.randn(cout, cin, ksize, ksize, generator=gen)
        state[f"{prefix}.wscale.b"] = torch.randn(cout, generator=gen) * 0.1
    resolution = 4 * 2 ** (len(sizes) - 2)
    out = "output" if old_format else f"output_{resolution}x{resolution}"
    state[f"{out}.conv.weight"] = torch.randn(3, sizes[-1], 1, 1, generator=gen)
    state[f"{out}.wscale.b"] = torch.randn(3, generator=gen) * 0.1
    return state


def reference_forward(state: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """An independent, functional ProGAN forward pass written from the reference notes."""
    import torch.nn.functional as F

    def pixelnorm(x: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt((x**2).mean(dim=1, keepdim=True) + 1e-8)

    x = z.view(z.shape[0], -1, 1, 1)
    k = 1
    while f"layer{k}.conv.weight" in state:
        w, b = state[f"layer{k}.conv.weight"], state[f"layer{k}.wscale.b"]
        x = pixelnorm(x)
        if k >= 3 and k % 2 == 1:
            x = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        ksize = w.shape[-1]
        x = F.conv2d(x, w, padding=3 if k == 1 else 1)
        x = x * (math.sqrt(2) / ksize / math.sqrt(w.shape[1])) + b.view(1, -1, 1, 1)
        x = torch.where(x >= 0, x, 0.2 * x)
        k += 1
    out_key = next(key for key in state if key.startswith("output_") and key.endswith("conv.weight"))
    w, b = state[out_key], state[out_key.replace("conv.weight", "wscale.b")]
    x = F.conv2d(pixelnorm(x), w) / math.sqrt(w.shape[1]) + b.view(1, -1, 1, 1)
    return x


@pytest.fixture
def small_sizes() -> list[int]:
    return [32, 32, 32, 16, 16, 8]  # z 32, 4x4..64x64


@pytest.fixture
def released_checkpoint(tmp_path: Path, small_sizes: list[int]) -> Path:
    path = tmp_path / "church_lsun.pth"
    torch.save(released_state_dict(small_sizes), path)
    return path


@pytest.fixture(scope="module")
def dissect_generator() -> ProgressiveGenerator:
    """A small random generator whose units differ enough to dissect (32x32, layer4: 12 units at 8x8)."""
    torch.manual_seed(4)
    g = ProgressiveGenerator([16, 16, 12, 8, 8])
    for p in g.parameters():
        torch.nn.init.normal_(p, std=1.0)
    return g.eval()


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zoo named ``tiny`` (16 px generator, segmenter, classifier, encoder) trained for a few steps."""
    from models.train.classifier import ClassifierConfig, train_classifier
    from models.train.gan import GanConfig, train_gan
    from models.train.segmenter import SegmenterConfig, train_segmenter
    from server.cli import main

    root = tmp_path_factory.mktemp("zoo")
    mp = pytest.MonkeyPatch()
    mp.setenv("GANPAINT_CACHE_DIR", str(root / "cache"))
    runs = root / "runs"
    train_gan(GanConfig(resolution=16, channels=[16, 16, 16, 8], d_channels=[8, 8, 8], kimg_per_phase=0.05,
                        final_kimg=0.05, dataset_size=32, snapshots=2, batch_sizes={"4": 8, "8": 8, "16": 8}),
              runs / "gan", resume=False, progress=False)
    train_segmenter(SegmenterConfig(width=8, resolution=16, dataset_size=32, steps=3, batch_size=4), runs / "seg",
                    resume=False, progress=False)
    train_classifier(ClassifierConfig(width=8, resolution=16, dataset_size=32, steps=3, batch_size=4), runs / "cls",
                     resume=False, progress=False)
    from models.train.encoder import EncoderConfig, train_encoder

    train_encoder(EncoderConfig(model=str(runs / "gan" / "generator.safetensors"), width=8, steps=3, batch_size=4),
                  runs / "enc", resume=False, progress=False)
    zoo = root / "zoo"
    for recipe, run in (("gan", "gan"), ("segmenter", "seg"), ("classifier", "cls"), ("encoder", "enc")):
        assert main(["zoo", "export", recipe, "--run-dir", str(runs / run), "--name", "tiny", "--zoo-dir", str(zoo)]) == 0
    yield zoo
    mp.undo()
