"""Dissection speed of the default model: samples per second, CPU and kernel time, and the floor.

    python bench/dissect_speed.py [--samples 2000] [--layer layer4] [--model world64] [--threads 1]

Times one full ``dissect()`` run as ``ganpaint dissect`` makes it (``retain_freed_memory`` first):
wall and CPU seconds, the kernel's share of them, minor page faults and peak memory. Then the
**forward-pass floor**: the same batches through the passes no dissection can skip (the generator
up to the layer for every sample; the whole generator and the segmenter for every sample, and for
any IQR calibration batch pass 2 does not share), timed alone; the run's ratio to it is what the
statistics cost.
In IQR mode also the **exact calibration count** alone: every unit's upsampled map of a
calibration image placed among its 100 candidate levels and counted per label (the upsampling,
``torch.searchsorted`` and the bincount timed apart), which IQR needs beyond the forward passes;
the run's ratio to floor + count is what the rest of the statistics cost.
Then the parts of one batch repeated. Prints JSON with the projected time for 10,000 samples.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch
from benchutil import timed

from dissect_core.gandissect import (
    DissectConfig,
    _resize_labels,
    calibration_batches,
    dissect,
    label_size_of,
    one_process_batches,
    tally_thresholded,
    upsample_to,
)
from dissect_core.heap import retain_freed_memory
from dissect_core.iqr import FRACTIONS, candidate_levels
from dissect_core.nethook import Trace
from dissect_core.segmenters import category_index, load_segmenter
from dissect_core.stats import IoUTally, LevelTally
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
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    heap = retain_freed_memory()
    generator = load_model(args.model)
    segmenter = load_segmenter(args.segmenter)
    config = DissectConfig(samples=args.samples, batch_size=args.batch_size, threshold=args.threshold)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    dissect(generator, [args.layer], segmenter, config)
    total = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    user, kernel = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    floor = forward_floor(generator, segmenter, args.layer, config)

    b = args.batch_size
    z = z_tensor(range(b), generator.z_dim)
    label_size = label_size_of(generator, config, {args.layer: generator.layer_shape(args.layer)})
    with torch.no_grad():
        images = generator(z)
        with Trace(generator, args.layer) as trace:
            generator(z)
        acts = trace[args.layer]
        labels = _resize_labels(segmenter(images.clamp(-1, 1)), label_size)
        level = acts.permute(1, 0, 2, 3).flatten(1).quantile(0.99, dim=1)

        def stats() -> None:
            tally_thresholded(IoUTally(acts.shape[1], category_index(segmenter)), acts, level, labels)

        parts = {
            "generator_full": timed(lambda: generator(z)),
            "generator_to_layer": timed(lambda: generator.forward_to(args.layer, z)),
            "segmenter": timed(lambda: segmenter(images)),
            "statistics": timed(stats),
        }
        exact = exact_calibration_count(acts, labels, category_index(segmenter)) if args.threshold == "iqr" else {}
    per_sample = {k: v / b for k, v in parts.items()}
    extra = {}
    if exact:
        count = sum(len(batch) for batch in calibration_batches(config))
        exact_seconds = exact["level_tally"] * count
        extra = {
            "iqr_exact_count_ms_per_image": {k: round(v * 1000, 2) for k, v in exact.items()},
            "iqr_exact_count_seconds": round(exact_seconds, 2),
            "run_vs_forward_floor_and_exact_count": round(total / (floor["total"] + exact_seconds), 2),
        }
    print(json.dumps({
        "benchmark": "dissect_speed", "model": args.model, "layer": args.layer, "samples": args.samples,
        "threshold": args.threshold, "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "retain_freed_memory": heap,
        "dissect_seconds": round(total, 2), "samples_per_second": round(args.samples / total, 1),
        "cpu_seconds": round(user + kernel, 2), "kernel_share": round(kernel / max(user + kernel, 1e-9), 3),
        "minor_page_faults": after.ru_minflt - before.ru_minflt, "peak_rss_mb": after.ru_maxrss // 1024,
        "forward_floor_seconds": {k: round(v, 2) for k, v in floor.items()},
        "run_vs_forward_floor": round(total / floor["total"], 2),
        **extra,
        "projected_seconds_10000": round(total * 10000 / args.samples, 1),
        "per_sample_ms": {k: round(v * 1000, 3) for k, v in per_sample.items()},
        "note": "pass 1 runs the generator to the layer (and samples the IQR candidate levels); iqr mode adds a "
                "calibration pass (generator, segmenter, exact level counts) on the first 1,000 samples, whose "
                "forward passes and IoU counts pass 2 reuses; pass 2 runs generator + segmenter + statistics",
    }, indent=2))


def exact_calibration_count(acts: torch.Tensor, labels: torch.Tensor, category_of: list[int]) -> dict[str, float]:
    """Seconds per image of the IQR calibration's exact count (``LevelTally.add`` on the upsampled
    maps, as the run makes it, one image at a time) and of its three parts alone."""
    units = acts.shape[1]
    levels = candidate_levels(acts.float().permute(1, 0, 2, 3).reshape(units, -1), FRACTIONS)
    tally = LevelTally(levels, category_of)
    size = labels.shape[-1]
    one = acts[:1].float()
    up = upsample_to(one, size)
    values = up.permute(1, 0, 2, 3).reshape(units, -1).contiguous()
    keys = torch.searchsorted(tally.levels, values, out_int32=True)
    keys = (keys + torch.arange(0, units * tally.buckets, tally.buckets, dtype=torch.int32)[:, None]) * tally.labels
    keys = keys[None] + labels[:1].to(torch.int32).permute(1, 0, 2, 3).reshape(labels.shape[1], 1, -1)

    def level_tally() -> None:
        for i in range(acts.shape[0]):
            tally.add(upsample_to(acts[i:i + 1].float(), size), labels[i:i + 1])

    return {
        "level_tally": timed(level_tally, repeats=3) / acts.shape[0],
        "upsample": timed(lambda: upsample_to(one, size)),
        "searchsorted": timed(lambda: torch.searchsorted(tally.levels, values, out_int32=True)),
        "bincount": timed(lambda: torch.bincount(keys.view(-1), minlength=units * tally.buckets * tally.labels)),
    }


def forward_floor(generator, segmenter, layer: str, config: DissectConfig) -> dict[str, float]:
    """Wall seconds of the forward passes a dissection cannot skip, over the run's own batches."""
    def run(batches: list[list[int]], full: bool) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            for batch in batches:
                z = z_tensor(batch, generator.z_dim, seed=config.seed)
                if full:
                    segmenter(generator(z).clamp(-1, 1))
                else:
                    generator.forward_to(layer, z)
        return time.perf_counter() - start

    batches = one_process_batches(config, config.samples)
    parts = {"generator_to_layer": run(batches, False), "generator_and_segmenter": run(batches, True)}
    if config.threshold == "iqr":  # only calibration batches pass 2 does not share (it reuses the others)
        parts["calibration_generator_and_segmenter"] = run([b for b in calibration_batches(config)
                                                            if b not in batches], True)
    parts["total"] = sum(parts.values())
    return parts


if __name__ == "__main__":
    main()
