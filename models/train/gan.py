"""Progressive GAN training (Karras et al. 2018) for the zoo generator.

The generator *is* ``models.proggan.ProgressiveGenerator`` at its final size; while the network
grows, ``GrowingGenerator`` adds a to-RGB block per lower resolution and blends resolutions during
fade-in. So the exported weights load with the same code as the released LSUN checkpoints.

Recipe: equalised learning rate and PixelNorm (in the generator class), minibatch standard
deviation in the discriminator, progressive growing with linear fade-in, non-saturating logistic
loss with a lazy R1 penalty on real images (StyleGAN2's regulariser, more stable than WGAN-GP on
small batches), Adam (lr 0.002, betas 0/0.99), and an exponential moving average of the generator
weights (half-life ``ema_kimg`` thousand images) which is what gets exported.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from models.proggan import (
    OutputConvBlock,
    ProgressiveGenerator,
    normalize_state_dict,
    resolution_for_sizes,
    sizes_from_state_dict,
)
from models.train.common import RunDir, TrainingCancelled, rng_state, seed_everything, set_rng_state
from models.train.data import world_arrays

__all__ = ["GanConfig", "GrowingGenerator", "Discriminator", "train_gan", "phases_for", "snapshot_state",
           "widen_generator_state", "nyquist_band", "log_spectrum"]


@dataclass
class GanConfig:
    """Everything that defines a GAN run (saved as config.json)."""

    resolution: int = 64
    world: str = "classic"
    """The scene world trained on: ``classic`` (v1) or ``framed`` (v2)."""
    channels: list[int] = field(default_factory=lambda: [128, 256, 256, 128, 64, 32])
    """``[z_dim, ch@4, ch@8, ...]``: the generator's sizes list."""
    d_channels: list[int] = field(default_factory=lambda: [256, 128, 64, 32, 16])
    """Discriminator widths ``[ch@4, ch@8, ...]``: narrower than G, which is what gets dissected."""
    amp: bool = True
    """bfloat16 autocast (about 1.7x faster on CPUs with AMX/AVX-512 BF16; the loss stays fp32)."""
    kimg_per_phase: float = 40.0
    """Thousands of real images shown per fade-in phase and per stabilisation phase."""
    final_kimg: float = 160.0
    """Extra thousands of images at the final resolution after its fade-in."""
    batch_sizes: dict[str, int] = field(default_factory=lambda: {"4": 64, "8": 64, "16": 48, "32": 32, "64": 32, "128": 16})
    lr: float = 0.002
    r1_gamma: float = 1.0
    r1_every: int = 4
    ema_kimg: float = 10.0
    dataset_size: int = 30000
    seed: int = 0
    snapshots: int = 6
    checkpoint_every: int = 200
    log_every: int = 50
    init_from: str | None = None
    """Refine these generator weights (a zoo id or a weight file) instead of growing from 4x4: training
    runs only at the final resolution, for ``d_warmup_kimg + final_kimg``. ``channels`` may be wider
    than the file's at any level; ``widen_generator_state`` adds the channels without changing the
    picture, so the refined generator starts where the old one stood."""
    freeze_layers: int = 0
    """The first N generator blocks stay exactly as loaded (4 keeps layer1..layer4: the edit layer's
    units, their dissection and the sample ids keep their meaning while the later layers sharpen)."""
    spectral_weight: float = 0.0
    """Weight of a spectrum-matching term in the generator loss (Durall et al. 2020, "Watch your
    up-convolution"): the L1 distance between the log power spectrum of the generated batch and a
    running mean of the real images' (grey levels, 2D). ProGAN's nearest-neighbour upsampling leaves
    period-2 stripes and checkerboards that a discriminator learns to ignore; this term sees them.
    0: off (the GAN loss alone)."""
    nyquist_weight: float = 0.0
    """Weight of a one-sided term on the Nyquist row and column of the log power spectrum: how far the
    generated batch's power there exceeds the real images' running mean, averaged over the band plus
    the same excess at the three pure period-2 components (1/2, 0), (0, 1/2), (1/2, 1/2): the stripes
    and checkerboard of the grid texture that nearest-neighbour upsampling leaves. The whole-spectrum
    term gives these 255 of 16384 bins almost no weight; this one gives them all of it. 0: off."""
    d_warmup_kimg: float = 0.0
    """Thousands of images a fresh discriminator trains alone before the generator moves (refinement
    runs, whose discriminator starts from nothing against a trained generator)."""


class GrowingGenerator(nn.Module):
    """A ``ProgressiveGenerator`` plus to-RGB blocks for every lower resolution (training only)."""

    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        self.net = ProgressiveGenerator(sizes)
        self.to_rgb = nn.ModuleDict({str(4 * 2**i): OutputConvBlock(c) for i, c in enumerate(sizes[1:-1])})

    def forward(self, z: torch.Tensor, resolution: int, alpha: float = 1.0) -> torch.Tensor:
        level = int(math.log2(resolution)) - 2  # 4 -> 0
        blocks = list(self.net.children())
        x = z[:, :, None, None]
        x = blocks[1](blocks[0](x))
        prev = x
        for i in range(level):
            prev = x
            x = blocks[3 + 2 * i](blocks[2 + 2 * i](x))
        rgb = self._rgb(x, resolution)
        if alpha < 1.0 and level > 0:
            low = F.interpolate(self._rgb(prev, resolution // 2), scale_factor=2, mode="nearest")
            rgb = low + (rgb - low) * alpha
        return rgb

    def _rgb(self, x: torch.Tensor, resolution: int) -> torch.Tensor:
        if resolution == self.net.resolution:
            return list(self.net.children())[-1](x)
        return self.to_rgb[str(resolution)](x)


class EqConv2d(nn.Module):
    """Conv with equalised learning rate: N(0,1) weights scaled by He's constant at run time."""

    def __init__(self, cin: int, cout: int, kernel: int, padding: int = 0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = math.sqrt(2.0 / (cin * kernel * kernel))
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqLinear(nn.Module):
    def __init__(self, cin: int, cout: int, gain: float = math.sqrt(2.0)) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = gain / math.sqrt(cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


def minibatch_stddev(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append the mean over features of the per-group standard deviation as one extra channel."""
    n, c, h, w = x.shape
    g = min(group, n)
    while n % g:
        g -= 1
    y = x.reshape(g, -1, c, h, w)
    y = torch.sqrt(y.var(dim=0, unbiased=False) + 1e-8).mean(dim=(1, 2, 3))  # (n/g,)
    y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """Mirror of the generator: from-RGB per resolution, two convs + 2x average pool per level."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.resolutions = [4 * 2**i for i in range(len(channels))]
        self.from_rgb = nn.ModuleDict({str(r): EqConv2d(3, c, 1) for r, c in zip(self.resolutions, channels)})
        self.blocks = nn.ModuleDict()
        for i in range(len(channels) - 1, 0, -1):
            r = self.resolutions[i]
            self.blocks[str(r)] = nn.ModuleList([EqConv2d(channels[i], channels[i], 3, 1), EqConv2d(channels[i], channels[i - 1], 3, 1)])
        c4 = channels[0]
        self.final_conv = EqConv2d(c4 + 1, c4, 3, 1)
        self.final_dense = EqConv2d(c4, c4, 4)
        self.out = EqLinear(c4, 1, gain=1.0)

    def forward(self, image: torch.Tensor, resolution: int, alpha: float = 1.0) -> torch.Tensor:
        act = lambda t: F.leaky_relu(t, 0.2)
        x = act(self.from_rgb[str(resolution)](image))
        r = resolution
        if r > 4:
            x = self._block(x, r, act)
            if alpha < 1.0:
                skip = act(self.from_rgb[str(r // 2)](F.avg_pool2d(image, 2)))
                x = skip + (x - skip) * alpha
            r //= 2
        while r > 4:
            x = self._block(x, r, act)
            r //= 2
        x = minibatch_stddev(x)
        x = act(self.final_conv(x))
        x = act(self.final_dense(x)).flatten(1)
        return self.out(x).squeeze(1)

    def _block(self, x: torch.Tensor, r: int, act: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        conv0, conv1 = cast(nn.ModuleList, self.blocks[str(r)])
        return F.avg_pool2d(act(conv1(act(conv0(x)))), 2)


def phases_for(config: GanConfig) -> list[tuple[int, float, float]]:
    """``(resolution, start_kimg, end_kimg)`` per phase; fade-in happens in the first half of a level."""
    if config.init_from is not None:
        return [(config.resolution, 0.0, config.d_warmup_kimg + config.final_kimg)]
    phases: list[tuple[int, float, float]] = []
    kimg = 0.0
    resolution = 4
    while resolution <= config.resolution:
        length = config.kimg_per_phase * (1 if resolution == 4 else 2)
        if resolution == config.resolution:
            length += config.final_kimg
        phases.append((resolution, kimg, kimg + length))
        kimg += length
        resolution *= 2
    return phases


def _schedule(config: GanConfig, kimg: float) -> tuple[int, float]:
    """Resolution and fade-in alpha at ``kimg`` thousand images into training."""
    for resolution, start, end in phases_for(config):
        if kimg < end or resolution == config.resolution:
            if resolution == 4 or config.init_from is not None:
                return resolution, 1.0
            return resolution, min(1.0, (kimg - start) / config.kimg_per_phase)
    raise AssertionError("unreachable")


def snapshot_state(growing: GrowingGenerator, resolution: int) -> dict[str, torch.Tensor]:
    """State dict of a ProgressiveGenerator at ``resolution`` made of the growing net's weights."""
    level = int(math.log2(resolution)) - 2
    n_layers = 2 + 2 * level
    state: dict[str, torch.Tensor] = {}
    for k in range(1, n_layers + 1):
        state[f"layer{k}.conv.weight"] = growing.net.state_dict()[f"layer{k}.conv.weight"]
        state[f"layer{k}.wscale.b"] = growing.net.state_dict()[f"layer{k}.wscale.b"]
    head = cast(OutputConvBlock, list(growing.net.children())[-1] if resolution == growing.net.resolution
                else growing.to_rgb[str(resolution)])
    state[f"output_{resolution}x{resolution}.conv.weight"] = head.conv.weight.detach()
    state[f"output_{resolution}x{resolution}.wscale.b"] = head.wscale.b.detach()
    return {k: v.detach().clone() for k, v in state.items()}


def widen_generator_state(state: dict[str, torch.Tensor], sizes: list[int], noise: float = 0.01,
                          seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights of a ProGAN with channel list ``sizes`` made from a narrower one's ``state``.

    New output channels get small random weights (``noise`` times the unit-variance initialisation)
    and zero bias; the weights that read the new channels start at zero. PixelNorm divides by the
    root mean square over channels and WScale by ``sqrt(fan_in)``: with the new channels near zero
    the two changes cancel, so the old channels see the same input and the image barely moves,
    while the new channels get gradients from the first step (all-zero ones would never move).
    """
    old_sizes = sizes_from_state_dict(state)
    if len(old_sizes) != len(sizes) or sizes[0] != old_sizes[0]:
        raise ValueError(f"cannot widen {old_sizes} to {sizes}: same z_dim and resolution needed")
    if any(new < old for new, old in zip(sizes, old_sizes)):
        raise ValueError(f"cannot widen {old_sizes} to {sizes}: a level would get narrower")
    gen = torch.Generator().manual_seed(seed)
    target = ProgressiveGenerator(sizes).state_dict()
    widened: dict[str, torch.Tensor] = {}
    for key, shape in ((k, v.shape) for k, v in target.items()):
        old = state[key].float()
        if key.endswith("wscale.b"):
            value = torch.zeros(shape)
            value[: old.shape[0]] = old
        else:
            value = torch.zeros(shape)
            cout, cin = old.shape[:2]
            value[:cout, :cin] = old
            if shape[0] > cout:
                value[cout:] = torch.randn((shape[0] - cout, *shape[1:]), generator=gen) * noise
        widened[key] = value
    return widened


def _initial_generator(config: GanConfig, generator: GrowingGenerator) -> None:
    """Load ``config.init_from`` (widened to ``config.channels``) into the growing net."""
    from models.checkpoints import read_weights
    from models.zoo import resolve_weights

    state = normalize_state_dict(read_weights(resolve_weights(str(config.init_from))))
    if resolution_for_sizes(sizes_from_state_dict(state)) != config.resolution:
        raise ValueError(f"init_from {config.init_from}: resolution differs from {config.resolution}")
    generator.net.load_state_dict(widen_generator_state(state, list(config.channels), seed=config.seed))


_GREY = (0.299, 0.587, 0.114)


def log_spectrum(images: torch.Tensor) -> torch.Tensor:
    """(H, W) log of the batch-mean power spectrum of (N, 3, H, W) images' grey levels (DC removed)."""
    weights = torch.tensor(_GREY, device=images.device)
    grey = torch.einsum("nchw,c->nhw", images.float(), weights)
    grey = grey - grey.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.fft2(grey).abs().square().mean(0) / (grey.shape[-1] * grey.shape[-2])
    return torch.log(power + 1e-6)


def nyquist_band(size: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """(size, size) bool mask of the spectrum's Nyquist row and column (1/2 cycle per pixel)."""
    band = torch.zeros(size, size, dtype=torch.bool, device=device)
    band[size // 2, :] = True
    band[:, size // 2] = True
    return band


def _downscale(real: torch.Tensor, resolution: int, alpha: float) -> torch.Tensor:
    """Real images at the current resolution, blended with the coarser level during fade-in."""
    factor = real.shape[-1] // resolution
    x = F.avg_pool2d(real, factor) if factor > 1 else real
    if alpha < 1.0:
        low = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
        x = low + (x - low) * alpha
    return x


def train_gan(config: GanConfig, run_dir: Path, resume: bool = True, device: str = "cpu",
              progress: bool = True, max_seconds: float | None = None) -> Path:
    """Train (or resume) a run; returns the path of the final EMA generator (fp32 safetensors).

    ``max_seconds`` stops early (checkpointed, resumable) after that much wall time.
    """
    from models.checkpoints import save_weights

    run = RunDir(run_dir)
    run.save_config(config, resume, adjustable=("final_kimg", "checkpoint_every", "log_every", "snapshots"))
    seed_everything(config.seed)
    sizes = list(config.channels)
    if 4 * 2 ** (len(sizes) - 2) != config.resolution:
        raise ValueError(f"channels {sizes} give resolution {4 * 2 ** (len(sizes) - 2)}, not {config.resolution}")
    data = world_arrays("train", config.dataset_size, config.resolution, progress=progress, world=config.world)["images"]
    reals = torch.from_numpy(data).permute(0, 3, 1, 2)  # uint8, converted per batch

    generator = GrowingGenerator(sizes)
    if config.init_from is not None:
        _initial_generator(config, generator)
    generator = generator.to(device)
    for block in list(generator.net.children())[: config.freeze_layers]:
        block.requires_grad_(False)
    if len(config.d_channels) != len(sizes) - 1:
        raise ValueError(f"d_channels needs {len(sizes) - 1} widths (4x4 .. {config.resolution}), got {config.d_channels}")
    discriminator = Discriminator(list(config.d_channels)).to(device)
    autocast = lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=config.amp)
    ema = copy.deepcopy(generator).eval().requires_grad_(False)
    opt_g = torch.optim.Adam([p for p in generator.parameters() if p.requires_grad], lr=config.lr, betas=(0.0, 0.99), eps=1e-8)
    r1_ratio = config.r1_every / (config.r1_every + 1)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr * r1_ratio,
                             betas=(0.0, 0.99 ** r1_ratio), eps=1e-8)
    step, images_seen = 0, 0
    real_spectrum = torch.zeros(config.resolution, config.resolution, device=device)
    """Running mean of the real images' log spectrum (the spectral term's target)."""
    saved = run.load_checkpoint() if resume else None
    if saved is not None:
        generator.load_state_dict(saved["generator"])
        discriminator.load_state_dict(saved["discriminator"])
        ema.load_state_dict(saved["ema"])
        opt_g.load_state_dict(saved["opt_g"])
        opt_d.load_state_dict(saved["opt_d"])
        step, images_seen = int(saved["step"]), int(saved["images_seen"])
        if "real_spectrum" in saved:
            real_spectrum.copy_(saved["real_spectrum"])
        set_rng_state(saved["rng"])
    total_images = int(phases_for(config)[-1][2] * 1000)
    snapshot_at = [int(total_images * (i + 1) / config.snapshots) for i in range(config.snapshots)]
    snapshot_at = [target for target in snapshot_at if target > images_seen]  # earlier ones exist
    snap_dir = run.path / "snapshots"
    snap_dir.mkdir(exist_ok=True)
    z_dim = sizes[0]
    start_time = time.monotonic()
    gen = torch.Generator().manual_seed(config.seed)
    if saved is not None and "data_rng" in saved:
        gen.set_state(saved["data_rng"])

    def checkpoint() -> None:
        run.save_checkpoint({
            "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
            "ema": ema.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
            "step": step, "images_seen": images_seen, "rng": rng_state(), "data_rng": gen.get_state(),
            "real_spectrum": real_spectrum,
        })

    bar = tqdm(total=total_images, initial=images_seen, unit="img", disable=not progress, desc="train gan")
    try:
        while images_seen < total_images:
            resolution, alpha = _schedule(config, images_seen / 1000)
            batch = config.batch_sizes[str(resolution)]
            index = torch.randint(0, reals.shape[0], (batch,), generator=gen)
            real = reals[index].to(device).float() / 127.5 - 1
            if torch.rand((), generator=gen) < 0.5:
                real = real.flip(3)
            real = _downscale(real, resolution, alpha)

            # discriminator step
            z = torch.randn(batch, z_dim, device=device)
            do_r1 = step % config.r1_every == 0
            real.requires_grad_(do_r1)
            with autocast():
                with torch.no_grad():
                    fake = generator(z, resolution, alpha)
                real_logits = discriminator(real, resolution, alpha).float()
                fake_logits = discriminator(fake, resolution, alpha).float()
            loss_d = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
            r1 = torch.zeros((), device=device)
            if do_r1:
                (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
                r1 = grad.float().square().sum(dim=(1, 2, 3)).mean()
                loss_d = loss_d + r1 * (config.r1_gamma / 2) * config.r1_every
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()

            # generator step (not while a fresh discriminator catches up)
            loss_g = torch.zeros((), device=device)
            spectral = torch.zeros((), device=device)
            if images_seen >= config.d_warmup_kimg * 1000:
                z = torch.randn(batch, z_dim, device=device)
                with autocast():
                    fake_g = generator(z, resolution, alpha)
                    fake_logits_g = discriminator(fake_g, resolution, alpha).float()
                loss_g = F.softplus(-fake_logits_g).mean()
                spectral = torch.zeros((), device=device)
                if (config.spectral_weight > 0 or config.nyquist_weight > 0) and resolution == config.resolution:
                    with torch.no_grad():
                        real_spectrum.lerp_(log_spectrum(real.detach()), 0.01 if real_spectrum.any() else 1.0)
                    fake_spectrum = log_spectrum(fake_g)
                    if config.spectral_weight > 0:
                        spectral = (fake_spectrum - real_spectrum).abs().mean()
                        loss_g = loss_g + config.spectral_weight * spectral
                    if config.nyquist_weight > 0:
                        over = F.relu(fake_spectrum - real_spectrum)
                        half = resolution // 2
                        points = (over[half, 0] + over[0, half] + over[half, half]) / 3
                        excess = over[nyquist_band(resolution, device)].mean() + points
                        spectral = spectral + excess
                        loss_g = loss_g + config.nyquist_weight * excess
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()

                beta = 0.5 ** (batch / max(config.ema_kimg * 1000, 1e-8))
                with torch.no_grad():
                    for p_ema, p in zip(ema.parameters(), generator.parameters()):
                        p_ema.lerp_(p, 1 - beta)

            step += 1
            images_seen += batch
            bar.update(batch)
            if step % config.log_every == 0:
                values = {"step": step, "kimg": round(images_seen / 1000, 3), "resolution": resolution,
                          "alpha": round(alpha, 4), "loss_d": loss_d.item(), "loss_g": loss_g.item(),
                          "r1": r1.item(), "spectral": spectral.item(), "real_score": real_logits.mean().item(), "fake_score": fake_logits.mean().item()}
                run.log(**values)
                bar.set_postfix(res=resolution, alpha=f"{alpha:.2f}", d=f"{loss_d.item():.3f}", g=f"{loss_g.item():.3f}")
            while snapshot_at and images_seen >= snapshot_at[0]:
                target = snapshot_at.pop(0)
                name = f"ema-{target:09d}img-{resolution}px"
                save_weights({k: v.half() for k, v in snapshot_state(ema, resolution).items()},
                             snap_dir / f"{name}.safetensors",
                             metadata={"kimg": target // 1000, "resolution": resolution, "step": step})
                _save_grid(ema, resolution, z_dim, snap_dir / f"{name}.png")
            if step % config.checkpoint_every == 0:
                checkpoint()
            if max_seconds is not None and time.monotonic() - start_time > max_seconds:
                checkpoint()
                raise TrainingCancelled(f"stopped after {max_seconds:.0f} s at {images_seen} images; resume to go on",
                                        interrupted=False)
    except KeyboardInterrupt as exc:
        checkpoint()
        raise TrainingCancelled(f"interrupted at {images_seen} images; checkpoint saved, resume to go on") from exc
    finally:
        bar.close()
    checkpoint()
    final = run.path / "generator.safetensors"
    save_weights(snapshot_state(ema, config.resolution), final, metadata={"kimg": images_seen // 1000, "step": step})
    return final


def _save_grid(growing: GrowingGenerator, resolution: int, z_dim: int, path: Path) -> None:
    from PIL import Image

    from models.samples import z_tensor

    net = ProgressiveGenerator(growing.net.sizes[: int(math.log2(resolution))])
    net.load_state_dict(snapshot_state(growing, resolution))
    Image.fromarray(sample_grid(net.eval(), z_tensor(range(64), z_dim))).save(path)


def sample_grid(generator: nn.Module, z: torch.Tensor, columns: int = 8) -> np.ndarray:
    """(rows*H, columns*W, 3) uint8 grid of generator outputs."""
    from models.imaging import to_uint8

    with torch.no_grad():
        pixels = to_uint8(generator(z))
    n, h, w, _ = pixels.shape
    rows = math.ceil(n / columns)
    grid = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = pixels[i]
    return grid
