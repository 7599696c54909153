"""Paint your own picture, measured: inversion quality and cost, the composite, painting on pictures.

    python bench/invert.py [--model world128] [--count 100] [--refine-steps 100] [--adapt-steps 300]
                           [--samples 100] [--strength 0.5]

Pictures: the first ``--count`` held-out renders of the model's world (scenes the GAN never
generated), at the model's resolution. Each is inverted as the server's job does
(``models.inversion.invert``: encoder, refine, adapt) and reported:

- PSNR of the encoder's reconstruction, of the refined one and of the adapted one (mean, median,
  min; target: adapted mean >= 30 dB), and the seconds of each step (medians; targets on 2 cores:
  encoder preview <= 0.3 s, refine + adapt <= 60 s);
- painting on the pictures exactly as the server paints an upload (the edit on the refined
  activations, the adapted generator, the composite into the picture), judged as in #12 (share of
  the painted window the segmenter labels as the concept: tree on open ground, dome above a roof,
  door on a wall; share of lamp pixels removed) and as objects (``dissect_core.objects``: pass
  rates of the painted tree, dome and door, rules calibrated on the GAN's own objects) by the
  model's segmenter and the independent judge, beside the same on ``--samples`` GAN samples;
- the share of pixels outside the edit band that equal the picture (target: all, within 1/255).

Contexts are found on each picture with the model's segmenter (as the server does for placement);
one window per picture and concept, drawn from a seed of the concept's own. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib

import numpy as np
import torch
from benchutil import object_labels
from torch.nn import functional as F

from dissect_core.efficacy import Window, brush_stroke, painting_contexts, render_samples, window_mask
from dissect_core.intervene import apply_edit, edit_maps
from dissect_core.objects import calibrate, kept_objects, objects_of, painted_object
from dissect_core.placement import PLACED, place_mask, scene_cells
from dissect_core.segmenters import load_segmenter
from dissect_core.tables import load_table
from models.imaging import to_uint8
from models.inversion import FeatureLoss, composite, edit_band, invert, picture_tensor, suffix_with
from models.train.data import world_arrays
from models.world.labels import LABEL_BY_NAME
from models.zoo import DEFAULT_GENERATOR, ZooError, companion_id, get_entry, load_model, model_world

PAINT = {"tree": ("ground", 2), "dome": ("building_top", 2), "door": ("wall", 2)}
"""Concept -> (context, window cells) painted, #12's cases."""
KEPT = ("door", "window")


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(a.mean()), 3), "median": round(float(np.median(a)), 3), "min": round(float(a.min()), 3),
            "max": round(float(a.max()), 3)}


@torch.no_grad()
def paint(generator, layer: str, r: torch.Tensor, stroke, mask: torch.Tensor, maps, picture: np.ndarray | None
          ) -> tuple[np.ndarray, np.ndarray]:
    """(painted uint8 image, changed edit-layer cells): the edit applied to ``r`` (C, h, w), the layers
    after it (times the picture's ``maps``), composited into ``picture`` when one is given."""
    channels, grid, _ = r.shape
    a, b = edit_maps([stroke(mask)], (channels, grid, grid), r.device)
    edited = apply_edit(r[None], a, b)
    image = to_uint8(suffix_with(generator, layer, edited, maps).clamp(-1, 1))[0]
    changed = (edited[0] != r).any(0).cpu().numpy()
    return (composite(picture, image, changed) if picture is not None else image), changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_GENERATOR)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--refine-steps", type=int, default=100)
    parser.add_argument("--adapt-steps", type=int, default=300)
    parser.add_argument("--samples", type=int, default=100, help="GAN samples painted for comparison (ids 50000..)")
    parser.add_argument("--calibrate-samples", type=int, default=300)
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--min-area", type=float, default=0.0015)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    generator = load_model(args.model)
    for p in generator.parameters():
        p.requires_grad_(False)
    encoder = load_model(f"{args.model}/encoder")
    table = load_table(get_entry(args.model).weights.parent / "dissection" / "layer4")
    layer, grid = table.layer, table.shape[1]
    size = generator.resolution
    own = load_segmenter(companion_id(args.model, "segmenter"))
    judges = {companion_id(args.model, "segmenter"): own}
    try:
        judge_id = f"{companion_id(args.model, 'segmenter').split('/')[0]}/judge"
        judges[judge_id] = load_segmenter(judge_id)
    except ZooError:
        pass
    try:
        feature_loss = FeatureLoss.from_classifier(load_model(companion_id(args.model, "classifier")))
    except ZooError:
        feature_loss = None

    # --- inversion ---------------------------------------------------------------------------------
    world = world_arrays("heldout", args.count, size, progress=False, world=model_world(args.model))
    pictures = world["images"]
    inversions = []
    for i in range(args.count):
        inversions.append(invert(generator, layer, encoder, pictures[i], args.refine_steps, args.adapt_steps, feature_loss))
    psnr = {stage: _stats([inv.psnr_db[stage] for inv in inversions]) for stage in ("encoded", "refined", "adapted")}
    seconds = {stage: round(float(np.median([inv.seconds[stage] for inv in inversions])), 3)
               for stage in ("encode", "refine", "adapt")}
    # the preview as the server answers an upload: encoder + one pass of the rest of the generator
    preview = []
    for i in range(min(args.count, 20)):
        t = time.perf_counter()
        with torch.no_grad():
            suffix_with(generator, layer, encoder(picture_tensor(pictures[i])))
        preview.append(time.perf_counter() - t)

    # --- painting: pictures (adapted, composited) and GAN samples (as the painter renders them) ------
    picture_x = torch.cat([inv.refined for inv in inversions])
    picture_maps = [inv.adaptation.multipliers() for inv in inversions]
    picture_images = torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 127.5 - 1
    picture_labels = object_labels(own, picture_images)
    sample_ids = list(range(50_000, 50_000 + args.samples))
    sample_x, sample_images = render_samples(generator, layer, sample_ids)
    sample_labels = object_labels(own, sample_images)
    _, calib_images = render_samples(generator, layer, list(range(70_000, 70_000 + args.calibrate_samples)))
    calib = {j: object_labels(s, calib_images) for j, s in judges.items()}
    before = {"pictures": {j: object_labels(s, picture_images) for j, s in judges.items()},
              "samples": {j: object_labels(s, sample_images) for j, s in judges.items()}}
    sets = {"pictures": (picture_x, picture_labels, picture_maps, pictures),
            "samples": (sample_x, sample_labels, None, None)}
    painting: dict[str, dict] = {}
    outside_equal: list[float] = []
    for concept, (place, cells) in PAINT.items():
        number = LABEL_BY_NAME[concept].number
        stroke = brush_stroke(table, concept, "add", args.strength)
        rules = {}
        for j in judges:
            min_area = max(2, round(args.min_area * calib[j].shape[-1] ** 2))
            rules[j] = calibrate(concept, [m for lab in calib[j] for m in objects_of(lab, concept, min_area)], min_area)
        entry: dict = {"place": f"{place}_{cells}x{cells}"}
        for name, (x, labels, maps, originals) in sets.items():
            rng = np.random.default_rng(zlib.crc32(f"{concept}-{name}".encode()))
            windows = []
            for i in range(len(x)):
                found = painting_contexts(labels[i], grid, number, size=cells)[place]
                if found:
                    y, xx = found[rng.integers(len(found))]
                    windows.append(Window(i, int(y), int(xx), place, cells))
            images = []
            for w in windows:
                mask = window_mask(w, size, grid)
                if concept in PLACED:  # the painter's placement, judged on the unedited picture
                    mask = place_mask(concept, mask, scene_cells(labels[w.image], grid))
                image, changed = paint(generator, layer, x[w.image], stroke, mask,
                                       maps[w.image] if maps is not None else None,
                                       originals[w.image] if originals is not None else None)
                if originals is not None:
                    outside = edit_band(changed, size) == 0
                    diff = np.abs(image.astype(int) - originals[w.image].astype(int)).max(-1)
                    outside_equal.append(float((diff[outside] <= 1).mean()) if outside.any() else 1.0)
                images.append(image)
            if not windows:
                entry[name] = {"windows": 0}
                continue
            painted = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
            result: dict = {"windows": len(windows)}
            for j, segmenter in judges.items():
                after = object_labels(segmenter, painted)
                label_size = after.shape[-1]
                shares, passed = [], []
                for row, w in enumerate(windows):
                    inside = F.interpolate(window_mask(w, size, grid)[None, None], size=label_size,
                                           mode="nearest")[0, 0].numpy() > 0
                    shares.append(float((after[row][inside] == number).mean()))
                    m = painted_object(after[row], concept, inside, rules[j].min_area)
                    kept, total = kept_objects(before[name][j][w.image], after[row], KEPT, inside, rules[j].min_area)
                    passed.append(rules[j].passes(m) and (kept / total if total else 1.0) >= 0.8)
                result[j] = {"window_share": round(float(np.mean(shares)), 4),
                             "object_pass_rate": round(float(np.mean(passed)), 4)}
            entry[name] = result
        painting[concept] = entry

    # lamps removed over the whole picture, per picture with lamps (>= 0.3 % of its pixels)
    lamp = LABEL_BY_NAME["lamp"].number
    removal: dict[str, dict] = {}
    remove = brush_stroke(table, "lamp", "remove", args.strength)
    full = torch.ones(size, size)
    for name, (x, _, maps, originals) in sets.items():
        shares: dict[str, list[float]] = {j: [] for j in judges}
        for i in range(len(x)):
            image, _ = paint(generator, layer, x[i], remove, full, maps[i] if maps is not None else None,
                             originals[i] if originals is not None else None)
            after_image = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
            for j, segmenter in judges.items():
                had = before[name][j][i] == lamp
                if had.mean() < 0.003:
                    continue
                after = object_labels(segmenter, after_image)[0]
                shares[j].append(float(1 - (had & (after == lamp)).sum() / had.sum()))
        removal[name] = {j: {"pictures": len(v), "mean_removed": round(float(np.mean(v)), 4) if v else None}
                         for j, v in shares.items()}

    targets = {
        "adapted_psnr_mean>=30": {"value": psnr["adapted"]["mean"], "met": psnr["adapted"]["mean"] >= 30},
        "outside_band_equal==1": {"value": round(float(np.mean(outside_equal)), 6) if outside_equal else None,
                                  "met": bool(outside_equal) and min(outside_equal) == 1.0},
        "encoder_preview_s<=0.3": {"value": round(float(np.median(preview)), 4), "met": float(np.median(preview)) <= 0.3},
        "refine+adapt_s<=60": {"value": round(seconds["refine"] + seconds["adapt"], 2),
                               "met": seconds["refine"] + seconds["adapt"] <= 60},
    }
    print(json.dumps({
        "benchmark": "invert", "model": args.model, "pictures": f"{model_world(args.model)} world heldout renders 0..{args.count - 1}",
        "count": args.count, "refine_steps": args.refine_steps, "adapt_steps": args.adapt_steps, "strength": args.strength,
        "threads": torch.get_num_threads(), "seconds_total": round(time.perf_counter() - start, 1),
        "targets": targets, "psnr_db": psnr, "step_seconds_median": {**seconds, "preview": round(float(np.median(preview)), 4)},
        "painting": painting, "lamp_removal": removal, "judges": list(judges), "samples": args.samples,
        "note": "painting on pictures: refined activations, the adapted generator, the composite, as the server paints uploads",
    }, indent=1))


if __name__ == "__main__":
    main()
