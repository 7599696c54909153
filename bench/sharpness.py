"""How sharp a generator's samples are, against renders of the world it was trained on.

    python bench/sharpness.py [--model world128] [--samples 200] [--frechet 0]

Both sets are turned to grey levels (0..255, ITU-R 601 weights) at the generator's resolution:
``--samples`` generator samples (ids from 0) and as many held-out world renders (the world the
model card names). Per set, the mean over images of:

- ``high_frequency_share``: the share of the spectral energy (DC removed) at radial frequencies
  above 1/4 cycle per pixel: blur lowers it;
- ``laplacian_variance``: the variance of the 4-neighbour Laplacian (a standard focus measure);
- ``nyquist_energy``: the mean power of the three Fourier components at 1/2 cycle per pixel, (1/2, 0),
  (0, 1/2) and (1/2, 1/2): the period-2 stripes and checkerboard that nearest-neighbour upsampling
  leaves when it is not trained away (the grid texture); ``nyquist_band_energy``: the mean power of
  the whole Nyquist row and column of the spectrum, for reference.

Prints one JSON document with both sets, the ratios generator / world and the targets of
"Paintings a person recognises" (high-frequency share >= 0.85x the world's, Nyquist energy <= 1.5x;
with ``--frechet N`` also the Frechet distance in the classifier's features on N samples, <= 0.25).
``--model`` takes a zoo id or a generator file (``--world`` then names its world).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from models.checkpoints import load_generator
from models.imaging import to_uint8
from models.samples import z_tensor
from models.train.data import world_arrays
from models.zoo import DEFAULT_GENERATOR, ZooError, get_entry, model_world, resolve_weights

GREY = np.array([0.299, 0.587, 0.114], np.float64)


def grey(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H, W) float64 grey levels."""
    return images.astype(np.float64) @ GREY


def sharpness(images: np.ndarray) -> dict[str, float]:
    """The three measures (mean over images) of (N, H, W, 3) uint8 images."""
    g = grey(images)
    n, h, w = g.shape
    centred = g - g.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(centred)) ** 2 / (h * w)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    total = power.sum(axis=(1, 2))
    high = power[:, radius > 0.25].sum(axis=1)
    band = np.zeros((h, w), bool)
    band[h // 2, :] = True
    band[:, w // 2] = True
    points = (power[:, h // 2, 0] + power[:, 0, w // 2] + power[:, h // 2, w // 2]) / 3
    laplacian = (g[:, 1:-1, :-2] + g[:, 1:-1, 2:] + g[:, :-2, 1:-1] + g[:, 2:, 1:-1] - 4 * g[:, 1:-1, 1:-1])
    return {
        "high_frequency_share": round(float(np.mean(high / np.maximum(total, 1e-12))), 5),
        "laplacian_variance": round(float(np.mean(laplacian.reshape(n, -1).var(axis=1))), 2),
        "nyquist_energy": round(float(np.mean(points)), 2),
        "nyquist_band_energy": round(float(np.mean(power[:, band].mean(axis=1))), 2),
    }


def generated(generator: torch.nn.Module, count: int, batch: int = 25) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, count, batch):
            ids = range(start, min(start + batch, count))
            out.append(to_uint8(generator(z_tensor(ids, generator.z_dim)).clamp(-1, 1)))
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_GENERATOR, help="zoo id or generator file")
    parser.add_argument("--world", help="world of a generator file (classic or framed); zoo ids know theirs")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--frechet", type=int, default=0, help="also the Frechet distance on this many samples")
    parser.add_argument("--classifier", default="world128/classifier", help="features for --frechet")
    args = parser.parse_args()
    started = time.perf_counter()
    weights = resolve_weights(args.model)
    generator = load_generator(weights)
    try:
        world = args.world or model_world(args.model)
    except ZooError:
        world = args.world or "framed"
    fake = generated(generator, args.samples)
    real = world_arrays("heldout", args.samples, generator.resolution, progress=False, world=world)["images"]
    ours, theirs = sharpness(fake), sharpness(real)
    ratios = {k: round(ours[k] / theirs[k], 3) for k in ours}
    report: dict[str, object] = {
        "model": args.model, "weights": str(weights), "world": world, "resolution": generator.resolution,
        "sizes": list(generator.sizes), "samples": args.samples, "generator": ours, "world_renders": theirs,
        "ratio": ratios,
        "targets": {"high_frequency_share>=0.85x": ratios["high_frequency_share"] >= 0.85,
                    "nyquist_energy<=1.5x": ratios["nyquist_energy"] <= 1.5},
    }
    if args.frechet:
        from models.evaluate import generator_report
        from models.zoo import load_model

        classifier = load_model(args.classifier)
        segmenter = load_model(f"{args.classifier.split('/')[0]}/segmenter")
        card = generator_report(generator, segmenter, classifier, samples=args.frechet, world_name=world)
        report["frechet_distance"] = card["frechet_distance"]
        report["frechet_floor"] = card["frechet_floor"]
        report["targets"]["frechet<=0.25"] = card["frechet_distance"] <= 0.25  # type: ignore[index]
    try:
        report["card_kimg"] = get_entry(args.model).card.get("training", {}).get("config", {}).get("final_kimg")
    except ZooError:
        report["card_kimg"] = None
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
