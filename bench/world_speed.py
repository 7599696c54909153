"""Scene-world rendering speed on one core: images per second at 64x64 (and 128x128).

    OMP_NUM_THREADS=1 python bench/world_speed.py [--count 600] [--repeats 5]

Prints one JSON document with the median and all repeats.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

from models.world import render_scene, world_seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = {}
    for size in (64, 128):
        rates = []
        for repeat in range(args.repeats):
            start = time.perf_counter()
            for i in range(args.count):
                render_scene(world_seed("train", repeat * args.count + i), size)
            rates.append(args.count / (time.perf_counter() - start))
        results[f"{size}px"] = {"images_per_second_median": round(statistics.median(rates), 1),
                                "repeats": [round(r, 1) for r in rates]}
    print(json.dumps({"benchmark": "world_render", "count": args.count, "machine": platform.processor() or platform.machine(),
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
