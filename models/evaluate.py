"""Measurements of the zoo models on held-out scene-world data (the numbers in the model cards).

- segmenter: IoU per concept (objects and materials) = sum of intersections / sum of unions over
  all held-out pixels, and their mean;
- classifier: held-out accuracy and confusion matrix;
- generator: Frechet distance between the classifier's pooled features of generated samples and of
  world images (with the floor: the same distance between two disjoint sets of world images), and
  per-concept pixel fractions and presence rates of samples as the segmenter sees them, next to
  the world's ground truth and the world as the segmenter sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from models.classifier import SceneClassifier
from models.proggan import ProgressiveGenerator
from models.samples import z_tensor
from models.segmenter import WorldSegmenter
from models.train.data import world_arrays
from models.world.labels import MATERIALS, OBJECTS, SCENES, label_id

__all__ = [
    "segmenter_report", "classifier_report", "generator_report", "encoder_report", "frechet_distance",
    "PRESENCE_FRACTION",
]

PRESENCE_FRACTION = 0.002
"""A concept 'appears' in an image when it covers at least this fraction of the pixels."""

CONCEPTS: tuple[str, ...] = OBJECTS + MATERIALS


def _batches(images: np.ndarray, batch: int, device: str) -> Iterator[tuple[slice, torch.Tensor]]:
    for start in range(0, len(images), batch):
        part = slice(start, min(start + batch, len(images)))
        yield part, torch.from_numpy(images[part]).permute(0, 3, 1, 2).to(device).float() / 127.5 - 1


@torch.no_grad()
def segmenter_report(segmenter: WorldSegmenter, count: int = 2000, size: int = 64, device: str = "cpu",
                     batch: int = 100, world: str = "classic", progress: bool = False) -> dict:
    """IoU per concept on ``count`` held-out images of ``world``."""
    data = world_arrays("heldout", count, size, progress=progress, world=world)
    numbers = [label_id(c) for c in CONCEPTS]
    inter = np.zeros(len(numbers))
    union = np.zeros(len(numbers))
    correct = total = 0
    for part, images in _batches(data["images"], batch, device):
        predicted = segmenter.segment(images).cpu().numpy()
        for channel, truth in ((0, data["objects"][part]), (1, data["materials"][part])):
            pred = predicted[:, channel]
            for i, number in enumerate(numbers):
                p, t = pred == number, truth == number
                inter[i] += np.logical_and(p, t).sum()
                union[i] += np.logical_or(p, t).sum()
        correct += (predicted[:, 0] == data["objects"][part]).sum()
        total += data["objects"][part].size
    iou = {c: float(inter[i] / union[i]) if union[i] else None for i, c in enumerate(CONCEPTS)}
    valid = [v for v in iou.values() if v is not None]
    return {"images": count, "iou": iou, "mean_iou": float(np.mean(valid)), "object_pixel_accuracy": correct / total}


@torch.no_grad()
def classifier_report(classifier: nn.Module, count: int = 2000, size: int = 64, device: str = "cpu",
                      batch: int = 200, world: str = "classic", progress: bool = False) -> dict:
    """Accuracy and confusion matrix (rows: truth, columns: prediction) on held-out images of ``world``."""
    data = world_arrays("heldout", count, size, progress=progress, world=world)
    confusion = np.zeros((len(SCENES), len(SCENES)), np.int64)
    for part, images in _batches(data["images"], batch, device):
        predicted = classifier(images).argmax(1).cpu().numpy()
        np.add.at(confusion, (data["scenes"][part], predicted), 1)
    per_class = {s: float(confusion[i, i] / max(confusion[i].sum(), 1)) for i, s in enumerate(SCENES)}
    return {"images": count, "accuracy": float(np.trace(confusion) / confusion.sum()), "per_class": per_class,
            "confusion": confusion.tolist(), "classes": list(SCENES)}


def pooled_features(classifier: SceneClassifier, images: torch.Tensor) -> torch.Tensor:
    """The classifier's global-average-pooled features (the input of its linear layer)."""
    return classifier.pool(classifier.features(images)).flatten(1)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (as in FID)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    sqrt_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = sqrt_a @ cov_b @ sqrt_a
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)


@torch.no_grad()
def _label_stats(label_fn: Callable[[], Iterator[np.ndarray]]) -> tuple[dict[str, float], dict[str, float]]:
    numbers = {c: label_id(c) for c in CONCEPTS}
    pixels = dict.fromkeys(CONCEPTS, 0.0)
    present = dict.fromkeys(CONCEPTS, 0)
    images = 0
    for maps in label_fn():  # (N, 2, H, W): object, material
        n, _, h, w = maps.shape
        images += n
        for concept, number in numbers.items():
            channel = 0 if concept in OBJECTS else 1
            counts = (maps[:, channel] == number).reshape(n, -1).sum(1)
            pixels[concept] += counts.sum() / (h * w)
            present[concept] += int((counts >= PRESENCE_FRACTION * h * w).sum())
    return ({c: pixels[c] / images for c in CONCEPTS}, {c: present[c] / images for c in CONCEPTS})


def _segmenter_input(segmenter: WorldSegmenter, images: torch.Tensor, size: int = 64) -> torch.Tensor:
    """Images larger than the segmenter's training size (64 px) brought down to it."""
    if images.shape[-1] <= size:
        return images
    return torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                                           antialias=True)


@torch.no_grad()
def generator_report(generator: ProgressiveGenerator, segmenter: WorldSegmenter, classifier: SceneClassifier, samples: int = 5000,
                     device: str = "cpu", batch: int = 100, world_name: str = "classic",
                     progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Frechet distance (and floor) plus concept statistics of ``samples`` generated images, against
    ``2 * samples`` held-out images of the world the generator was trained on. ``progress(stage,
    done, total)`` is called while rendering the world, generating and measuring."""
    world = world_arrays("heldout", 2 * samples, generator.resolution, progress=progress is not None, world=world_name)
    z_dim = generator.z_dim

    def generated() -> Iterator[torch.Tensor]:
        for start in range(0, samples, batch):
            ids = range(start, min(start + batch, samples))
            yield generator(z_tensor(ids, z_dim, device=device)).clamp(-1, 1)

    gen_features, gen_maps = [], []
    for done, images in enumerate(generated(), start=1):
        gen_features.append(pooled_features(classifier, images).cpu().numpy())
        gen_maps.append(segmenter.segment(_segmenter_input(segmenter, images))[:, :2].cpu().numpy())
        if progress is not None:
            progress("generate", min(done * batch, samples), samples)
    world_features: list[np.ndarray] = []
    world_seg: list[np.ndarray] = []
    for part, images in _batches(world["images"], batch, device):
        if progress is not None:
            progress("world features", part.stop, len(world["images"]))
        world_features.append(pooled_features(classifier, images).cpu().numpy())
        if len(world_seg) * batch < samples:
            world_seg.append(segmenter.segment(_segmenter_input(segmenter, images))[:, :2].cpu().numpy())
    wf = np.concatenate(world_features).astype(np.float64)
    gf = np.concatenate(gen_features).astype(np.float64)
    truth = np.stack([world["objects"][:samples], world["materials"][:samples]], 1)
    size = gen_maps[0].shape[-1]
    if truth.shape[-1] > size:  # compare label shares at the segmenter's resolution
        step = truth.shape[-1] // size
        truth = truth[..., step // 2::step, step // 2::step]
    sample_pixels, sample_presence = _label_stats(lambda: iter(gen_maps))
    world_pixels, world_presence = _label_stats(lambda: iter([truth]))
    seg_pixels, seg_presence = _label_stats(lambda: iter(world_seg))
    concepts = {
        c: {"sample_pixels": sample_pixels[c], "world_pixels": world_pixels[c], "world_segmented_pixels": seg_pixels[c],
            "sample_presence": sample_presence[c], "world_presence": world_presence[c],
            "world_segmented_presence": seg_presence[c]}
        for c in CONCEPTS
    }
    return {
        "samples": samples,
        "frechet_distance": frechet_distance(gf, wf[:samples]),
        "frechet_floor": frechet_distance(wf[samples:], wf[:samples]),
        "feature_space": "the zoo classifier's pooled features",
        "presence_threshold": PRESENCE_FRACTION,
        "concepts": concepts,
        "concepts_below_1pct_of_samples": [c for c in CONCEPTS if sample_presence[c] < 0.01],
    }


@torch.no_grad()
def encoder_report(encoder: nn.Module, generator: ProgressiveGenerator, layer: str, samples: int = 100,
                   first_id: int = 50_000, device: str = "cpu") -> dict:
    """An encoder on ``samples`` held-out generated samples (ids from ``first_id``): the mean per-cell
    cosine of E(x) with the true layer activations, and the PSNR of G_after(E(x)) against x."""
    from models.imaging import to_uint8
    from models.inversion import psnr

    ids = list(range(first_id, first_id + samples))
    r = generator.forward_to(layer, z_tensor(ids, generator.z_dim, device=device))
    x = generator.forward_from(layer, r).clamp(-1, 1)
    predicted = torch.cat([encoder(x[i:i + 25]) for i in range(0, samples, 25)]).float()
    cosine = torch.nn.functional.cosine_similarity(predicted, r, dim=1).mean(dim=(1, 2))
    rebuilt = to_uint8(generator.forward_from(layer, predicted).clamp(-1, 1))
    originals = to_uint8(x)
    psnrs = [psnr(a, b) for a, b in zip(originals, rebuilt)]
    return {"samples": samples, "sample_ids": [first_id, first_id + samples - 1], "layer": layer,
            "cosine_mean": round(float(cosine.mean()), 4), "cosine_min": round(float(cosine.min()), 4),
            "psnr_mean_db": round(float(np.mean(psnrs)), 2), "psnr_min_db": round(float(np.min(psnrs)), 2)}
