"""What dissecting a released 256 px generator with a real-scene segmenter costs on this machine.

    python bench/real_model_cost.py [--batch 8] [--repeats 3] [--samples 2000] [--causal 64]

Nothing is downloaded: the generator has the released LSUN layout ([512, 512, 512, 512, 256, 128,
64, 32], random weights) and the segmenters are built from the configurations of the public ADE20K
checkpoints (SegFormer-B0 and -B4 at 512 x 512, UperNet with ConvNeXt-T), random weights too, so the
arithmetic is that of the real models. Measures per-image milliseconds of each part (median of
``--repeats`` batches) and prints a JSON estimate of a server's first-use dissection:
``samples x (generator + segmenter)`` for the IoU pass, plus the IQR calibration pass (the first
1000 samples again) and the causal
ranking (``units x causal`` suffix runs from layer4). Needs ``ganpaint[real]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dissect_core.hf_segmenter import HFSegmenter  # noqa: E402
from models.proggan import ProgressiveGenerator  # noqa: E402

RELEASED_SIZES = [512, 512, 512, 512, 256, 128, 64, 32]


def segmenters() -> dict[str, tuple[torch.nn.Module, object]]:
    import transformers as t

    ade = {"num_labels": 150}
    processor = t.SegformerImageProcessor(size={"height": 512, "width": 512})
    b0 = t.SegformerConfig(hidden_sizes=[32, 64, 160, 256], depths=[2, 2, 2, 2], num_attention_heads=[1, 2, 5, 8],
                           decoder_hidden_size=256, **ade)
    b4 = t.SegformerConfig(hidden_sizes=[64, 128, 320, 512], depths=[3, 8, 27, 3], num_attention_heads=[1, 2, 5, 8],
                           decoder_hidden_size=768, **ade)
    convnext = t.ConvNextConfig(hidden_sizes=[96, 192, 384, 768], depths=[3, 3, 9, 3],
                                out_features=["stage1", "stage2", "stage3", "stage4"])
    upernet = t.UperNetConfig(backbone_config=convnext, hidden_size=512, use_auxiliary_head=False, **ade)
    return {
        "segformer-b0-ade-512": (t.SegformerForSemanticSegmentation(b0), processor),
        "segformer-b4-ade-512": (t.SegformerForSemanticSegmentation(b4), processor),
        "upernet-convnext-tiny-ade-512": (t.UperNetForSemanticSegmentation(upernet), processor),
    }


def median_ms(fn, repeats: int, per: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000 / per, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=2000, help="dissection samples to estimate for")
    parser.add_argument("--causal", type=int, default=64, help="causal-ranking samples to estimate for")
    parser.add_argument("--only", nargs="*", help="segmenter names to measure (default all)")
    args = parser.parse_args()
    torch.manual_seed(0)
    generator = ProgressiveGenerator(RELEASED_SIZES).eval().requires_grad_(False).to(memory_format=torch.channels_last)
    z = torch.randn(args.batch, 512)
    report: dict = {"benchmark": "real_model_cost", "threads": torch.get_num_threads(), "batch": args.batch,
                    "generator": "released 256 px layout, random weights", "per_image_ms": {}, "estimate_minutes": {}}
    with torch.inference_mode():
        images = generator(z).clamp(-1, 1)
        report["per_image_ms"]["generator"] = median_ms(lambda: generator(z), args.repeats, args.batch)
        features = generator.forward_to("layer4", z)
        suffix = median_ms(lambda: generator.forward_from("layer4", features), args.repeats, args.batch)
        report["per_image_ms"]["generator_after_layer4"] = suffix
        for name, (model, processor) in segmenters().items():
            if args.only and name not in args.only:
                continue
            segmenter = HFSegmenter(model, processor, identity=name)
            cost = median_ms(lambda: segmenter(images), args.repeats, args.batch)
            report["per_image_ms"][name] = cost
            # the IoU pass and the IQR calibration pass (its first 1000 samples) run generator + segmenter
            images_segmented = args.samples + min(args.samples, 1000)
            passes = images_segmented * (report["per_image_ms"]["generator"] + cost)
            causal = 512 * args.causal * suffix
            report["estimate_minutes"][name] = {
                "dissection": round(passes / 60000, 1), "causal_ranking": round(causal / 60000, 1),
                "note": f"{args.samples} samples, {args.causal} causal samples x 512 units"}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
