"""Painting through Ray Serve replicas and dissection as Ray tasks, against plain ``ganpaint serve``, one run.

    python bench/cluster.py [--painters 8] [--seconds 20] [--samples 200]

Painting: the same painters (each sends its next edit, a moving dab on one of five samples, as soon
as the previous image arrives, so every edit changes the picture) against plain ``ganpaint serve``,
then ``ganpaint serve --cluster`` with 1 and with 2 replicas of one CPU each. Reports edits/s and
round-trip percentiles for ``--painters`` at once, and for one painter alone, whose p50 against the
plain server is the per-edit cost of Serve's proxy hop. On a 2-core machine two replicas share the
cores the plain server has to itself, so the gain is bounded by the cores, not the replicas.

Dissection: the default model's edit layer on ``--samples`` samples, in one process (``dissect``,
all cores) and as shard tasks on 1 and on 2 Ray workers of one CPU each (``dissect_sharded`` with
``RayRunner``), wall time, and whether each table equals the one-process table. Prints one JSON
document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from serve_latency import free_port, launch, stop, summarize, wait_ready, ws_painter  # noqa: E402

from models.zoo import DEFAULT_GENERATOR  # noqa: E402

ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "GANPAINT_JOB_RUNNER": "local"}


def paint(port: int, model: str, size: int, painters: int, seconds: float, brush: str) -> dict:
    async def run_all(latencies: list[float], errors: list[str]) -> None:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(ws_painter(f"ws://127.0.0.1:{port}/ws/paint", f"http://127.0.0.1:{port}", model,
                                          size, i, stop_at, brush, latencies, errors,
                                          sample=lambda i, seq: 1000 + i * 7 + seq % 5)
                               for i in range(painters)))

    latencies: list[float] = []
    errors: list[str] = []
    started = time.monotonic()
    asyncio.run(run_all(latencies, errors))
    return summarize(latencies, errors, time.monotonic() - started)


def serving(name: str, replicas: int, model: str, args: argparse.Namespace) -> dict:
    """One server variant: started, warmed up, measured, stopped."""
    port = free_port()
    command = [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--log-level", "warning"]
    if replicas:
        command += ["--cluster", "--replicas", str(replicas), "--cpus-per-replica", "1",
                    "--painters-per-replica", str(max(16, args.painters))]
    env = {**os.environ, **ENV, "GANPAINT_DEFAULT_MODEL": model, "GANPAINT_QUEUE_SIZE": "64"}
    started = time.monotonic()
    proc = launch(command, env)
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        for _ in range(4 * max(replicas, 1)):  # every replica has loaded the model
            httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=60)
        start_s = time.monotonic() - started
        size = httpx.get(f"http://127.0.0.1:{port}/api/models/{model}", timeout=60).json()["resolution"]
        paint(port, model, size, args.painters, 3.0, args.brush)  # warm-up: caches, first batches
        crowd = paint(port, model, size, args.painters, args.seconds, args.brush)
        alone = paint(port, model, size, 1, args.seconds / 2, args.brush)
        return {"variant": name, "replicas": replicas, "start_s": round(start_s, 1),
                f"painters_{args.painters}": crowd, "painter_1": alone}
    finally:
        stop(proc, timeout=60)


def dissection(model: str, samples: int) -> dict:
    """One process, then 1 and 2 Ray workers, on the same samples; tables compared."""
    import ray
    import torch

    from dissect_core.gandissect import DissectConfig, dissect
    from dissect_core.segmenters import load_segmenter
    from dissect_core.sharded import dissect_sharded
    from models.zoo import load_model
    from server.ray_tasks import RayRunner
    from server.settings import Settings

    os.environ.update(ENV)
    generator = load_model(model)
    layer = "layer4"  # the edit layer of every zoo generator (server.catalog)
    segmenter = load_segmenter(Settings().segmenter or "world64/segmenter")
    config = DissectConfig(samples=samples)
    torch.set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    expected = dissect(generator, [layer], segmenter, config)[layer]
    results: dict = {"layer": layer, "samples": samples, "threshold": config.threshold,
                     "one_process_s": round(time.perf_counter() - started, 1), "one_process_threads": torch.get_num_threads()}
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT.parent)}})
    try:
        for workers in (1, 2):
            runner = RayRunner(num_cpus=1, workers=workers)
            list(runner.map(_warm, (), [None] * workers))  # worker processes started and torch imported
            started = time.perf_counter()
            table = dissect_sharded(generator, [layer], segmenter, config, runner)[layer]
            seconds = time.perf_counter() - started
            same = all(np.array_equal(getattr(table, k), getattr(expected, k))
                       for k in ("iou", "level", "q99", "top_images", "top_scores"))
            same = same and np.allclose(table.concept_features, expected.concept_features, rtol=1e-6)
            results[f"ray_{workers}_workers_s"] = round(seconds, 1)
            results[f"ray_{workers}_workers_same_table"] = bool(same)
    finally:
        ray.shutdown()
    results["speedup_2_vs_1_workers"] = round(results["ray_1_workers_s"] / results["ray_2_workers_s"], 2)
    return results


def _warm(_: None) -> int:
    import torch  # noqa: F401

    return os.getpid()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--painters", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--samples", type=int, default=200, help="dissection samples (0 skips the dissection)")
    parser.add_argument("--model", default=DEFAULT_GENERATOR)
    parser.add_argument("--brush", default="tree")
    args = parser.parse_args()
    if not 1 <= args.painters <= 64 or not 1 <= args.seconds <= 300 or not 0 <= args.samples <= 5000:
        raise SystemExit("painters must be 1..64, seconds 1..300, samples 0..5000")
    variants = [serving("plain", 0, args.model, args), serving("cluster_1_replica", 1, args.model, args),
                serving("cluster_2_replicas", 2, args.model, args)]
    by_name = {v["variant"]: v for v in variants}
    crowd = f"painters_{args.painters}"
    plain = by_name["plain"]
    report: dict = {
        "benchmark": "cluster", "model": args.model, "cpus": os.cpu_count(), "seconds": args.seconds,
        "painting": variants,
        "edits_per_second_vs_plain": {v["variant"]: round(v[crowd]["edits_per_second"]
                                                          / max(plain[crowd]["edits_per_second"], 1e-9), 2)
                                      for v in variants},
        "proxy_overhead_p50_ms": round(by_name["cluster_1_replica"]["painter_1"]["p50_ms"]
                                       - plain["painter_1"]["p50_ms"], 2),
    }
    if args.samples:
        report["dissection"] = dissection(args.model, args.samples)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
