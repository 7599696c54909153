"""CAM method latency on the zoo classifier, and Score-CAM's speed-up from batching channels.

    python bench/cam.py [--batch 32] [--repeats 3] [--model world64/classifier]

Per method: median wall time to explain a batch of held-out world scenes. Score-CAM is timed with
channels batched (``batch_size`` masked images per forward) and one channel at a time (on a
smaller batch, scaled, since it is slow). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from benchutil import timed

from dissect_core.cam import METHODS, ScoreCAM, make_method
from models.world import render_scene, world_seed
from models.zoo import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="world64/classifier")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--unbatched-images", type=int, default=2)
    args = parser.parse_args()
    classifier = load_model(args.model)
    images = torch.from_numpy(np.stack([render_scene(world_seed("heldout", i)).image for i in range(args.batch)]))
    images = images.permute(0, 3, 1, 2).float() / 127.5 - 1
    latency = {}
    for name in METHODS:
        method = make_method(name, classifier, batch_size=64)
        repeats = 1 if name in ("scorecam", "ablationcam") else args.repeats
        latency[name] = round(timed(lambda: method(images), repeats) * 1000, 1)
    few = images[: args.unbatched_images]
    batched = timed(lambda: ScoreCAM(classifier, batch_size=64)(few), 1)
    one_by_one = timed(lambda: ScoreCAM(classifier, batch_size=1)(few), 1)
    print(json.dumps({
        "benchmark": "cam_latency", "model": args.model, "batch": args.batch, "threads": torch.get_num_threads(),
        "median_ms_per_batch": latency,
        "ms_per_image": {k: round(v / args.batch, 2) for k, v in latency.items()},
        "scorecam_channel_batching": {"images": args.unbatched_images, "batched_64_ms": round(batched * 1000, 1),
                                      "one_channel_at_a_time_ms": round(one_by_one * 1000, 1),
                                      "speedup": round(one_by_one / batched, 2)},
    }, indent=2))


if __name__ == "__main__":
    main()
