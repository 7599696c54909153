"""One supervised training loop for the segmenter and the classifier (they differ in data and loss).

Each recipe supplies a model, a function turning a batch of world arrays into (inputs, targets)
with augmentation, and a loss. The loop handles seeds, bf16 autocast, a cosine learning-rate
schedule, resumable checkpoints, the loss log, a progress bar and cancellation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from models.checkpoints import save_weights
from models.train.common import RunDir, TrainingCancelled, rng_state, seed_everything, set_rng_state

__all__ = ["train_supervised", "augment_images"]

BatchFn = Callable[[dict[str, np.ndarray], np.ndarray, torch.Generator], tuple[torch.Tensor, Any]]
LossFn = Callable[[Any, Any], tuple[torch.Tensor, dict[str, float]]]


def augment_images(images: torch.Tensor, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Photometric jitter, blur and noise on [-1, 1] images, so models also read GAN outputs."""
    n = images.shape[0]
    rand = lambda *shape: torch.rand(*shape, generator=gen)
    brightness = (rand(n, 1, 1, 1) - 0.5) * 0.3 * strength
    contrast = 1 + (rand(n, 1, 1, 1) - 0.5) * 0.4 * strength
    tint = (rand(n, 3, 1, 1) - 0.5) * 0.1 * strength
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    out = (images - mean) * contrast + mean + brightness + tint
    blur = rand(n) < 0.3 * strength
    if blur.any():
        kernel = torch.tensor([0.25, 0.5, 0.25])
        k2 = (kernel[:, None] * kernel[None, :]).expand(3, 1, 3, 3)
        blurred = nn.functional.conv2d(nn.functional.pad(out[blur], (1, 1, 1, 1), mode="replicate"), k2, groups=3)
        out[blur] = blurred
    noise = torch.randn(out.shape, generator=gen) * (rand(n, 1, 1, 1) * 0.06 * strength)
    return (out + noise).clamp(-1.2, 1.2)


def train_supervised(
    *, config: Any, run_dir: Path, model: nn.Module, data: dict[str, np.ndarray], make_batch: BatchFn,
    loss_fn: LossFn, resume: bool, device: str, progress: bool, max_seconds: float | None, desc: str,
) -> Path:
    """Train ``model`` for ``config.steps`` steps of ``config.batch_size``; returns ``model.safetensors``."""
    run = RunDir(run_dir)
    run.save_config(config, resume, adjustable=("checkpoint_every", "log_every"))
    seed_everything(config.seed)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    step = 0
    saved = run.load_checkpoint() if resume else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        step = int(saved["step"])
        set_rng_state(saved["rng"])
    gen = torch.Generator().manual_seed(config.seed)
    if saved is not None and "data_rng" in saved:
        gen.set_state(saved["data_rng"])
    count = len(next(iter(data.values())))
    autocast = lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=config.amp)
    start = time.monotonic()

    def checkpoint() -> None:
        run.save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "step": step, "rng": rng_state(), "data_rng": gen.get_state()})

    bar = tqdm(total=config.steps, initial=step, unit="step", disable=not progress, desc=desc)
    try:
        while step < config.steps:
            lr = config.lr * 0.5 * (1 + math.cos(math.pi * step / config.steps))
            for group in optimizer.param_groups:
                group["lr"] = lr
            index = torch.randint(0, count, (config.batch_size,), generator=gen).numpy()
            inputs, targets = make_batch(data, index, gen)
            with autocast():
                outputs = model(inputs.to(device))
            loss, parts = loss_fn(outputs, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            bar.update(1)
            if step % config.log_every == 0:
                run.log(step=step, lr=lr, loss=loss.item(), **parts)
                bar.set_postfix(loss=f"{loss.item():.4f}")
            if step % config.checkpoint_every == 0:
                checkpoint()
            if max_seconds is not None and time.monotonic() - start > max_seconds:
                checkpoint()
                raise TrainingCancelled(f"stopped after {max_seconds:.0f} s at step {step}; resume to go on",
                                        interrupted=False)
    except KeyboardInterrupt as exc:
        checkpoint()
        raise TrainingCancelled(f"interrupted at step {step}; checkpoint saved, resume to go on") from exc
    finally:
        bar.close()
    checkpoint()
    model.eval()
    return save_weights(model.state_dict(), run.path / "model.safetensors", metadata={"step": step})
