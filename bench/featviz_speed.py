"""Feature visualisation speed against lucent (torch-lucent 0.1.8), in one run.

    python bench/featviz_speed.py --lucent-python /path/to/lucent-venv/bin/python [--steps 64] [--repeats 3]

Both optimise the same objective (one channel of the world64 classifier's ``features.block4``,
batch 1) over the same parameterisation (a 64 px Fourier-space image with decorrelated colour,
lucent's ``param.image(64, fft=True, decorrelate=True)`` and ours ``FFTImage``), with the same
transforms (pad 6, jitter 4, scale 0.9-1.1, rotate -10..10 degrees, jitter 2: lucid's standard set
scaled to 64 px, as ours are; lucent's upsampling to 224 px is turned off with
``fixed_image_size=64``) and Adam at lr 0.05, for ``--steps`` steps on one thread. Each variant runs
in its own process, alternated ``--repeats`` times; the medians of seconds per step are printed.
Ours runs twice: with plain ReLU gradients, as lucent does for any model but its own InceptionV1,
and with our default: redirected ReLU gradients for the first 16 steps, as lucid
(``relu_gradient_override``).

lucent needs an environment of its own: it imports ``torchvision``, and PyPI's torchvision does
not import beside the CPU torch wheel this project pins. In that environment install
``torch==2.13.0 kornia==0.4.1 numpy tqdm pillow decorator scikit-learn ipython safetensors`` and
``torch-lucent==0.1.8 --no-deps``, plus a ``torchvision`` stand-in package whose
``transforms.Normalize`` is the one class lucent imports (the bench never calls it:
``preprocess=False``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYER, UNIT, SIZE, LR = "features.block4", 3, 64, 0.05


def run_ours(steps: int, redirect: bool) -> float:
    import torch

    from dissect_core.featviz import FFTImage, Transforms, channel, render
    from models.zoo import load_model

    model = load_model("world64/classifier")
    param = FFTImage(1, SIZE, generator=torch.Generator().manual_seed(0))
    render(model, channel(LAYER, UNIT), param, 2, LR, Transforms(), redirect_relu=redirect)  # warm-up
    start = time.perf_counter()
    render(model, channel(LAYER, UNIT), param, steps, LR, Transforms(), redirect_relu=redirect)
    return (time.perf_counter() - start) / steps


def run_lucent(steps: int) -> float:
    from lucent.optvis import objectives, param, render, transform

    from models.zoo import load_model

    model = load_model("world64/classifier")
    transforms = [transform.pad(6), transform.jitter(4), transform.random_scale([0.9, 0.95, 1.0, 1.05, 1.1]),
                  transform.random_rotate([-10, -5, 0, 0, 0, 5, 10]), transform.jitter(2)]

    def go(n: int) -> None:
        render.render_vis(model, objectives.channel(LAYER.replace(".", "_"), UNIT),
                          lambda: param.image(SIZE, fft=True, decorrelate=True), transforms=transforms,
                          thresholds=(n,), preprocess=False, progress=False, show_image=False,
                          fixed_image_size=SIZE, optimizer=lambda p: __import__("torch").optim.Adam(p, lr=LR))

    go(2)  # warm-up
    start = time.perf_counter()
    go(steps)
    return (time.perf_counter() - start) / steps


def child(variant: str, steps: int) -> None:
    import torch

    torch.set_num_threads(1)
    seconds = run_lucent(steps) if variant == "lucent" else run_ours(steps, redirect=variant == "ours_redirected")
    print(json.dumps({"variant": variant, "seconds_per_step": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lucent-python", default=os.environ.get("LUCENT_PYTHON"),
                        help="the interpreter of the environment lucent is installed in")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["ours", "ours_redirected", "lucent"])
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps)
        return
    if not args.lucent_python:
        raise SystemExit("--lucent-python (or LUCENT_PYTHON) is needed: see this script's docstring")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    runs: dict[str, list[float]] = {"ours": [], "ours_redirected": [], "lucent": []}
    for _ in range(args.repeats):
        for variant in runs:
            python = args.lucent_python if variant == "lucent" else sys.executable
            out = subprocess.run([python, __file__, "--child", variant, "--steps", str(args.steps)], env=env,
                                 capture_output=True, text=True, check=True, cwd=ROOT)
            runs[variant].append(json.loads(out.stdout.strip().splitlines()[-1])["seconds_per_step"])
    median = {k: statistics.median(v) for k, v in runs.items()}
    print(json.dumps({
        "benchmark": "featviz_speed", "model": "world64/classifier", "layer": LAYER, "unit": UNIT, "image_size": SIZE,
        "steps": args.steps, "repeats": args.repeats, "threads": 1,
        "ms_per_step_median": {k: round(v * 1000, 2) for k, v in median.items()},
        "ms_per_step_runs": {k: [round(x * 1000, 2) for x in v] for k, v in runs.items()},
        "lucent_over_ours": round(median["lucent"] / median["ours"], 2),
        "lucent_over_ours_redirected": round(median["lucent"] / median["ours_redirected"], 2),
    }, indent=2))


if __name__ == "__main__":
    main()
