"""Dissection speed of the default model: samples per second and the cost split.

    python bench/dissect_speed.py [--samples 2000] [--layer layer4] [--model world64]

Times one full ``dissect()`` run, then the parts of one batch repeated: generator forward (full
and up to the layer), segmenter, and statistics (upsample, threshold, IoU tally). Prints JSON with
the projected time for 10,000 samples.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from benchutil import timed

from dissect_core.gandissect import DissectConfig, dissect, upsample_to
from dissect_core.nethook import Trace
from dissect_core.segmenters import category_index, load_segmenter
from dissect_core.stats import IoUTally
from models.samples import z_tensor
from models.zoo import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="world64")
    parser.add_argument("--segmenter", default="world64/segmenter")
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threshold", choices=["quantile", "iqr"], default="quantile")
    args = parser.parse_args()
    generator = load_model(args.model)
    segmenter = load_segmenter(args.segmenter)
    config = DissectConfig(samples=args.samples, batch_size=args.batch_size, threshold=args.threshold)
    start = time.perf_counter()
    dissect(generator, [args.layer], segmenter, config)
    total = time.perf_counter() - start

    b = args.batch_size
    z = z_tensor(range(b), generator.z_dim)
    label_size = generator.resolution // 2
    with torch.no_grad():
        images = generator(z)
        with Trace(generator, args.layer) as trace:
            generator(z)
        acts = trace[args.layer]
        labels = segmenter(images)[..., 1::2, 1::2]
        level = acts.permute(1, 0, 2, 3).flatten(1).quantile(0.99, dim=1)

        def stats() -> None:
            tally = IoUTally(acts.shape[1], category_index(segmenter))
            tally.add(upsample_to(acts, label_size) > level[None, :, None, None], labels)

        with torch.no_grad():
            parts = {
                "generator_full": timed(lambda: generator(z)),
                "generator_to_layer": timed(lambda: generator.forward_to(args.layer, z)),
                "segmenter": timed(lambda: segmenter(images)),
                "statistics": timed(stats),
            }
    per_sample = {k: v / b for k, v in parts.items()}
    print(json.dumps({
        "benchmark": "dissect_speed", "model": args.model, "layer": args.layer, "samples": args.samples,
        "threshold": args.threshold, "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "dissect_seconds": round(total, 2), "samples_per_second": round(args.samples / total, 1),
        "projected_seconds_10000": round(total * 10000 / args.samples, 1),
        "per_sample_ms": {k: round(v * 1000, 3) for k, v in per_sample.items()},
        "note": "pass 1 runs the generator to the layer; iqr mode adds a calibration pass (generator, segmenter, "
                "level tallies) on the first 1,000 samples; pass 2 runs generator + segmenter + statistics",
    }, indent=2))


if __name__ == "__main__":
    main()
