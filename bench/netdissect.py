"""Network Dissection speed and peak memory: ours versus a NetDissect-Lite-style baseline.

    python bench/netdissect.py [--samples 5000] [--model world64/classifier] [--layer features.block4]

Both dissect the same classifier layer on the same world probe set (exported once, Broden format),
each in its own process so peak memory (max RSS) is its own. The baseline follows NetDissect-Lite's
algorithm as described in the reference notes: extract every feature map into a float64 memmap,
compute per-unit quantiles from all of it, then tally per image in small batches, upsampling each
unit's map separately (bilinear) and counting label intersections with numpy. Prints JSON with
images per second, peak memory and the ratios; also checks the two agree on each unit's label.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_ours(model_id: str, layer: str, probe: Path, samples: int) -> dict:
    from dissect_core.datasets.broden import BrodenDataset
    from dissect_core.netdissect import NetDissectConfig, netdissect
    from models.zoo import load_model

    model = load_model(model_id)
    data = BrodenDataset(probe)
    start = time.perf_counter()
    table = netdissect(model, [layer], data, NetDissectConfig(limit=samples))[layer]
    seconds = time.perf_counter() - start
    labels = [table.unit_label(u)[0] for u in range(table.units)]
    return {"seconds": seconds, "labels": labels, "best_iou": [float(table.iou[u].max()) for u in range(table.units)]}


def run_lite(model_id: str, layer: str, probe: Path, samples: int) -> dict:
    import numpy as np
    import torch
    from scipy import ndimage

    from dissect_core.datasets.broden import BrodenDataset
    from dissect_core.nethook import Trace
    from models.zoo import load_model

    model = load_model(model_id)
    data = BrodenDataset(probe)
    count = min(samples, len(data))
    start = time.perf_counter()
    # 1. feature extraction into a float64 memmap (NetDissect-Lite's FeatureOperator)
    with tempfile.TemporaryDirectory() as tmp:
        features = None
        for b in range(0, count, 128):
            idx = range(b, min(b + 128, count))
            images = torch.from_numpy(np.stack([data[i][0] for i in idx])).permute(0, 3, 1, 2).float() / 127.5 - 1
            with torch.no_grad(), Trace(model, layer, stop=True) as trace:
                model(images)
            acts = trace[layer].double().numpy()
            if features is None:
                features = np.memmap(Path(tmp) / "features.mmap", dtype=np.float64, mode="w+", shape=(count, *acts.shape[1:]))
            features[b:b + len(idx)] = acts
        units = features.shape[1]
        # 2. per-unit quantile over all positions of all images
        thresholds = np.quantile(np.asarray(features).transpose(1, 0, 2, 3).reshape(units, -1), 0.995, axis=1)
        # 3. tally, one image at a time in batches of 16, each unit upsampled separately
        n_labels = data.num_labels
        categories = list(data.categories)
        primary = np.full(n_labels, -1)
        for label in data.labels:
            primary[label.number] = categories.index(label.category)
        inter = np.zeros((units, n_labels))
        unit_cat = np.zeros((units, len(categories)))
        label_area = np.zeros(n_labels)
        for i in range(count):
            _, labels = data[i]
            maps = [m for c in categories for m in labels[c]]
            sh, sw = maps[0].shape
            present = {int(primary[v]) for m in maps for v in np.unique(m) if v > 0}
            for m in maps:
                label_area += np.bincount(m.ravel(), minlength=n_labels)[:n_labels]
            for u in range(units):
                fmap = features[i, u]
                up = ndimage.zoom(fmap, (sh / fmap.shape[0], sw / fmap.shape[1]), order=1)
                mask = up > thresholds[u]
                area = mask.sum()
                for c in present:
                    unit_cat[u, c] += area
                for m in maps:
                    inter[u] += np.bincount(m[mask].ravel(), minlength=n_labels)[:n_labels]
        label_area[0] = 0
        union = unit_cat[:, np.clip(primary, 0, None)] + label_area[None] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-10), 0)
        iou[:, 0] = 0
        seconds = time.perf_counter() - start
    names = {label.number: label.name for label in data.labels}
    best = iou.argmax(1)
    return {"seconds": seconds, "labels": [names.get(int(b), "-") for b in best], "best_iou": iou.max(1).tolist()}


def child(args: argparse.Namespace) -> None:
    fn = run_ours if args.variant == "ours" else run_lite
    result = fn(args.model, args.layer, args.probe, args.samples)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--model", default="world64/classifier")
    parser.add_argument("--layer", default="features.block4")
    parser.add_argument("--variant", choices=("ours", "lite"))
    parser.add_argument("--probe", type=Path)
    args = parser.parse_args()
    if args.variant:
        child(args)
        return
    from server.services import ensure_world_probe

    probe = ensure_world_probe(args.samples)
    results = {}
    for variant in ("ours", "lite"):
        out = subprocess.run([sys.executable, __file__, "--variant", variant, "--probe", str(probe), "--samples",
                              str(args.samples), "--model", args.model, "--layer", args.layer],
                             capture_output=True, text=True, check=True)
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    ours, lite = results["ours"], results["lite"]
    agree = sum(a == b for a, b in zip(ours["labels"], lite["labels"])) / len(ours["labels"])
    print(json.dumps({
        "benchmark": "netdissect", "model": args.model, "layer": args.layer, "images": args.samples,
        "ours": {"seconds": round(ours["seconds"], 2), "images_per_second": round(args.samples / ours["seconds"], 1),
                 "peak_rss_mb": round(ours["peak_rss_mb"], 1)},
        "netdissect_lite_style": {"seconds": round(lite["seconds"], 2),
                                  "images_per_second": round(args.samples / lite["seconds"], 1),
                                  "peak_rss_mb": round(lite["peak_rss_mb"], 1)},
        "speedup": round(lite["seconds"] / ours["seconds"], 2),
        "memory_ratio_lite_over_ours": round(lite["peak_rss_mb"] / ours["peak_rss_mb"], 2),
        "unit_label_agreement": round(agree, 3),
        "note": "labels can differ where the baseline's per-unit zoom upsampling differs from bilinear interpolation",
    }, indent=2))


if __name__ == "__main__":
    main()
