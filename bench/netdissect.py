"""Network Dissection speed and peak memory: ours versus NetDissect-Lite's own steps.

    python bench/netdissect.py [--samples 5000] [--model world64/classifier] [--layer features.block4]

Both dissect the same classifier layer on the same world probe set (exported once, Broden format),
each in its own process, so peak memory (max RSS) and CPU time are its own. The baseline follows
NetDissect-Lite's ``feature_operation.py`` step by step: ``feature_extraction`` decodes the images
only, in batches of 128, into a float64 memmap (and the per-image maxima); ``quantile_threshold``
is ``np.percentile`` over all positions; ``tally`` reads each image's label maps, counts the labels,
and for every unit whose map exceeds its threshold somewhere upsamples it bilinearly to the label
size (``imresize(mode='F')``, i.e. PIL's float bilinear), takes the pixels above the threshold,
bincounts the labels under them and charges the unit's area to the categories found there
(``tally_units_cat``). Prints JSON: wall and CPU seconds, images per second, peak memory, the
ratios, and how many units get the same label.
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


PRECISION = "auto"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_ours(model_id: str, layer: str, probe: Path, samples: int) -> dict:
    from dissect_core.datasets.broden import BrodenDataset
    from dissect_core.heap import retain_freed_memory
    from dissect_core.netdissect import NetDissectConfig, netdissect
    from models.zoo import load_model

    retain_freed_memory()  # as ``ganpaint netdissect`` does
    model = load_model(model_id)
    data = BrodenDataset(probe)
    config = NetDissectConfig(limit=samples, precision=PRECISION)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start, cpu = time.perf_counter(), _cpu_seconds()
    table = netdissect(model, [layer], data, config)[layer]
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    after = resource.getrusage(resource.RUSAGE_SELF)
    labels = [table.unit_label(u)[0] for u in range(table.units)]
    return {"seconds": seconds, "cpu_seconds": cpu, "labels": labels,
            "kernel_share": (after.ru_stime - before.ru_stime) / max(cpu, 1e-9),
            "minor_page_faults": after.ru_minflt - before.ru_minflt,
            "best_iou": [table.unit_label(u)[2] for u in range(table.units)],
            "floor": forward_floor(model, layer, data, config)}


def forward_floor(model, layer: str, data, config) -> dict:
    """The passes Network Dissection cannot skip, timed alone over the same batches: decoding the
    probe (images and label maps) and the classifier's forward pass up to the layer, in the model
    arithmetic the run uses (batch norms folded, as in the run)."""
    import torch

    from dissect_core.netdissect import _batches, _load_batch
    from dissect_core.nethook import Trace, folded_copy
    from dissect_core.precision import resolve_precision

    dtype = resolve_precision(config.precision, torch.device("cpu"))
    runner = folded_copy(model.eval()).to(dtype)
    decode = forward = 0.0
    with torch.no_grad():
        for indices in _batches(min(len(data), config.limit or len(data)), config.batch_size):
            start = time.perf_counter()
            images, _ = _load_batch(data, indices, torch.device("cpu"))
            middle = time.perf_counter()
            with Trace(runner, [layer], stop=True):
                runner(images.to(dtype))
            decode, forward = decode + middle - start, forward + time.perf_counter() - middle
    return {"decode_seconds": decode, "forward_seconds": forward}


def run_lite(model_id: str, layer: str, probe: Path, samples: int) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from dissect_core.datasets.broden import BrodenDataset
    from dissect_core.nethook import Trace
    from models.zoo import load_model

    model = load_model(model_id)
    data = BrodenDataset(probe)
    count = min(samples, len(data))
    categories = list(data.categories)
    n_labels = data.num_labels
    labelcat = np.zeros((n_labels, len(categories)))
    for label in data.labels:
        labelcat[label.number, categories.index(label.category)] = 1
    start, cpu = time.perf_counter(), _cpu_seconds()
    with tempfile.TemporaryDirectory() as tmp:
        # feature_extraction: images only, batches of 128, float64 memmaps of the maps and their maxima
        features = maxfeatures = None
        for b in range(0, count, 128):
            idx = range(b, min(b + 128, count))
            images = torch.from_numpy(np.stack([data.image(i) for i in idx])).permute(0, 3, 1, 2).float() / 127.5 - 1
            with torch.no_grad(), Trace(model, layer, stop=True) as trace:
                model(images)
            acts = trace[layer].double().numpy()
            if features is None:
                features = np.memmap(Path(tmp) / "features.mmap", dtype=float, mode="w+", shape=(count, *acts.shape[1:]))
                maxfeatures = np.memmap(Path(tmp) / "max.mmap", dtype=float, mode="w+", shape=(count, acts.shape[1]))
            features[b:b + len(idx)] = acts
            maxfeatures[b:b + len(idx)] = acts.max(3).max(2)
        units = features.shape[1]
        # quantile_threshold
        threshold = np.percentile(features, 100 * (1 - 0.005), axis=[0, 2, 3])
        # tally (one process, as Lite's settings recommend)
        tally_both = np.zeros((units, n_labels))
        tally_units = np.zeros(units)
        tally_units_cat = np.zeros((units, len(categories)))
        tally_labels = np.zeros(n_labels)
        for i in range(count):
            maps = data.label_maps(i)
            pixels = np.stack([m for c in categories for m in maps[c]])
            sh, sw = pixels.shape[1:]
            tally_label = np.bincount(pixels.ravel())
            tally_label[0] = 0
            tally_labels[:len(tally_label)] += tally_label
            for unit in range(units):
                feature_map = features[i][unit]
                if feature_map.max() > threshold[unit]:
                    mask = np.asarray(Image.fromarray(feature_map.astype(np.float32), mode="F").resize((sw, sh), Image.BILINEAR))
                    indexes = np.argwhere(mask > threshold[unit])
                    tally_units[unit] += len(indexes)
                    tally_bt = np.bincount(pixels[:, indexes[:, 0], indexes[:, 1]].ravel())
                    if len(tally_bt) > 0:
                        tally_bt[0] = 0
                    tally_cat = np.dot(tally_bt[None, :], labelcat[:len(tally_bt), :])[0]
                    tally_both[unit, :len(tally_bt)] += tally_bt
                    tally_units_cat[unit] += len(indexes) * (tally_cat > 0)
        tally_units_cat = np.dot(tally_units_cat, labelcat.T)
        iou = tally_both / (tally_units_cat + tally_labels[np.newaxis, :] - tally_both + 1e-10)
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    # per category the best label among labels of that primary category; the unit's label is the best of those
    names = {label.number: label.name for label in data.labels}
    labels, best = [], []
    for unit in range(units):
        per_cat = [(iou[unit] * labelcat[:, c]).max() for c in range(len(categories))]
        c = int(np.argmax(per_cat))
        number = int((iou[unit] * labelcat[:, c]).argmax())
        labels.append(names.get(number, "-"))
        best.append(float(per_cat[c]))
    return {"seconds": seconds, "cpu_seconds": cpu, "labels": labels, "best_iou": best}


def child(args: argparse.Namespace) -> None:
    global PRECISION
    PRECISION = args.precision
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
    parser.add_argument("--precision", default="auto", choices=("fp32", "bf16", "auto"),
                        help="ours: model arithmetic (the baseline always runs float32, as Lite does)")
    args = parser.parse_args()
    if args.variant:
        child(args)
        return
    from server.services import ensure_world_probe

    probe = ensure_world_probe(args.samples)
    results = {}
    for variant in ("ours", "lite"):
        out = subprocess.run([sys.executable, __file__, "--variant", variant, "--probe", str(probe), "--samples",
                              str(args.samples), "--model", args.model, "--layer", args.layer, "--precision", args.precision],
                             capture_output=True, text=True, check=True)
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    ours, lite = results["ours"], results["lite"]
    agree = sum(a == b for a, b in zip(ours["labels"], lite["labels"])) / len(ours["labels"])
    print(json.dumps({
        "benchmark": "netdissect", "model": args.model, "layer": args.layer, "images": args.samples,
        "precision_ours": args.precision,
        "ours": {"seconds": round(ours["seconds"], 2), "cpu_seconds": round(ours["cpu_seconds"], 2),
                 "images_per_second": round(args.samples / ours["seconds"], 1), "peak_rss_mb": round(ours["peak_rss_mb"], 1),
                 "kernel_share": round(ours["kernel_share"], 3), "minor_page_faults": ours["minor_page_faults"],
                 "floor_decode_seconds": round(ours["floor"]["decode_seconds"], 2),
                 "floor_forward_seconds": round(ours["floor"]["forward_seconds"], 2),
                 "run_vs_forward": round(ours["seconds"] / ours["floor"]["forward_seconds"], 2),
                 "run_vs_decode_and_forward": round(ours["seconds"] / (ours["floor"]["decode_seconds"]
                                                                        + ours["floor"]["forward_seconds"]), 2)},
        "netdissect_lite_steps": {"seconds": round(lite["seconds"], 2), "cpu_seconds": round(lite["cpu_seconds"], 2),
                                  "images_per_second": round(args.samples / lite["seconds"], 1),
                                  "peak_rss_mb": round(lite["peak_rss_mb"], 1)},
        "speedup_wall": round(lite["seconds"] / ours["seconds"], 2),
        "speedup_cpu": round(lite["cpu_seconds"] / ours["cpu_seconds"], 2),
        "memory_ratio_lite_steps_over_ours": round(lite["peak_rss_mb"] / ours["peak_rss_mb"], 2),
        "memory_note": "the Lite-steps replica takes its thresholds with np.percentile over all features in memory; "
                       "Lite's own code uses its streaming QuantileVector (the np.percentile line is commented out "
                       "there) and peaks lower: measured at 1,244 MB on 5,000 images (issue 23), when ours peaked at "
                       "904 MB (see ours.peak_rss_mb for this run)",
        "unit_label_agreement": round(agree, 3),
        "units_with_the_same_label": sum(a == b for a, b in zip(ours["labels"], lite["labels"])),
        "units": len(ours["labels"]),
        "note": "labels can differ where PIL's bilinear resize and torch's bilinear interpolation round differently",
    }, indent=2))


if __name__ == "__main__":
    main()
