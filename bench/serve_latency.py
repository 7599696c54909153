"""Edit round-trip latency over a real websocket, against a baseline that serves like the original.

    python bench/serve_latency.py [--painters 1 8 32] [--seconds 8] [--model world128]
    python bench/serve_latency.py --model random256.pth --units 20 --stroke dab --compare-full

Starts ``ganpaint serve`` on 127.0.0.1 (a free port) and, in the same run, a baseline server that
does per edit what the original GANPaint server did: a full forward pass of the whole stroke stack
under one lock, answered as JSON with a base64 JPEG over HTTP POST. Each painter sends its next
edit as soon as the previous answer arrives (a stroke that grows), for a fixed time. Loopback only,
bounded in time. Prints one JSON document: p50/p95/p99 round trip, edits/s and errors per setting.

``--model`` is a zoo id or a generator checkpoint (e.g. a released-format 256 px file): that is served
from an operator models directory, without a segmenter, so paint it with ``--units N`` (units 0..N-1).
``--stroke dab`` (default, the headline) adds a 2x2-cell dab of the edit layer per edit at the next
of 16 places (a new stroke after the 16th): every edit changes cells, the case incremental rendering
is for. ``--stroke grow`` drags a square that grows 3 px each edit (the drag case): most of its
edits leave the mask pooled to the 8x8 edit layer unchanged and cost the server almost nothing, so
the report gives ``unchanged_pooled_mask_share``, the share of a painter's edits whose pooled mask
equals the previous edit's. ``--compare-full`` also serves with ``GANPAINT_INCREMENTAL=false`` in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.zoo import DEFAULT_GENERATOR  # noqa: E402
from server.catalog import checkpoint_model_id  # noqa: E402
from server.schemas import MaskSpec  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start a server process from the repository root, its output in a temporary file (an unread
    pipe fills up and then blocks the server's logging); ``wait_ready`` shows it on failure."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log = log  # type: ignore[attr-defined]
    return proc


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Terminate, then kill if it does not end within ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            proc.log.seek(0)  # type: ignore[attr-defined]
            raise RuntimeError(f"server exited: {proc.log.read().decode()[-2000:]}")  # type: ignore[attr-defined]
        try:
            response = httpx.get(url, timeout=2)
            body = response.json()
            tables = body.get("models", [{}])[0].get("tables", {}) if "models" in body else {"x": {"status": "ready"}}
            if response.status_code == 200 and all(t["status"] == "ready" for t in tables.values()):
                return
        except (httpx.HTTPError, ValueError, IndexError):
            pass
        time.sleep(0.5)
    raise RuntimeError("server not ready in time")


DAB_PLACES = [(r, c) for r in (0, 2, 4, 6) for c in (0, 2, 4, 6)]
"""Top-left cells of the 16 non-overlapping 2x2-cell dabs of an 8x8 edit layer, in painting order."""


def recipe(model: str, size: int, sample: int, step: int, brush: str, stroke: str = "grow",
           units: int = 0) -> dict:
    """Edit ``step`` of one painter's stroke on a sample: a growing square (``grow``, like a drag) or
    ``step % 16 + 1`` dabs of 2x2 edit cells (``dab``)."""
    mask = np.zeros((size, size), bool)
    if stroke == "dab":
        cell = size // 8
        for r, c in DAB_PLACES[: step % len(DAB_PLACES) + 1]:
            mask[r * cell:(r + 2) * cell, c * cell:(c + 2) * cell] = True
    else:
        extent = 4 + (step * 3) % (size - 8)
        mask[size // 4: size // 4 + extent, size // 4: size // 4 + extent] = True
    paint = {"units": list(range(units))} if units else {"brush": brush}
    return {"v": 1, "model": model, "sample": sample,
            "strokes": [{**paint, "action": "add", "strength": 0.5, "mask": MaskSpec.from_array(mask).model_dump()}]}


async def ws_painter(url: str, origin: str, model: str, size: int, painter: int, stop: float, brush: str,
                     latencies: list[float], errors: list[str], stroke: str = "grow", units: int = 0,
                     sample: Callable[[int, int], int] = lambda painter, seq: 100 + painter,
                     preview: Callable[[int], bool] = lambda seq: False) -> None:
    """One painter: sends its next edit as soon as the previous answer arrives, until ``stop``."""
    async with websockets.connect(url, origin=origin, max_size=None) as ws:
        seq = 0
        while time.monotonic() < stop:
            start = time.perf_counter()
            await ws.send(json.dumps({"v": 1, "type": "edit", "seq": seq, "preview": preview(seq),
                                      "recipe": recipe(model, size, sample(painter, seq), seq, brush, stroke,
                                                       units)}))
            header = json.loads(await ws.recv())
            if header["type"] == "error":
                errors.append(header["code"])
            else:
                await ws.recv()
                latencies.append(time.perf_counter() - start)
            seq += 1


async def http_painter(url: str, model: str, size: int, painter: int, stop: float, brush: str,
                       latencies: list[float], errors: list[str], stroke: str = "grow", units: int = 0) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        seq = 0
        while time.monotonic() < stop:
            start = time.perf_counter()
            response = await client.post(url, json=recipe(model, size, 100 + painter, seq, brush, stroke, units))
            if response.status_code == 200 and response.json()["d"].startswith("data:image/jpeg;base64,"):
                latencies.append(time.perf_counter() - start)
            else:
                errors.append(str(response.status_code))
            seq += 1


def unchanged_pooled_mask_share(size: int, stroke: str, edits: int = 200, grid: int = 8) -> float:
    """Share of one painter's first ``edits`` edits whose mask, max-pooled to the ``grid`` x ``grid``
    edit layer as the painter pools it, equals the previous edit's (an edit that changes nothing)."""
    def pooled(step: int) -> np.ndarray:
        mask = MaskSpec.model_validate(recipe("m", size, 0, step, "tree", stroke)["strokes"][0]["mask"]).to_tensor().numpy() > 0
        cell = size // grid
        return mask.reshape(grid, cell, grid, cell).any(axis=(1, 3))

    same = [bool((pooled(i) == pooled(i - 1)).all()) for i in range(1, edits)]
    return round(float(np.mean(same)), 4)


def summarize(latencies: list[float], errors: list[str], seconds: float) -> dict:
    ms = sorted(x * 1000 for x in latencies)
    pick = lambda q: round(ms[min(len(ms) - 1, int(q * len(ms)))], 2) if ms else None
    return {"edits": len(ms), "edits_per_second": round(len(ms) / seconds, 2), "p50_ms": pick(0.5),
            "p95_ms": pick(0.95), "p99_ms": pick(0.99), "mean_ms": round(statistics.mean(ms), 2) if ms else None,
            "errors": len(errors), "error_codes": sorted(set(errors))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--painters", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--model", default=DEFAULT_GENERATOR, help="zoo id or generator checkpoint file")
    parser.add_argument("--brush", default="tree")
    parser.add_argument("--units", type=int, default=0, help="paint units 0..N-1 instead of a brush")
    parser.add_argument("--stroke", choices=["grow", "dab"], default="dab")
    parser.add_argument("--compare-full", action="store_true",
                        help="also serve with incremental rendering off (same run)")
    parser.add_argument("--zoo-dir", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="GANPAINT_PRECISION of the ganpaint server (the baseline is always float32)")
    args = parser.parse_args()

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    model, extra = args.model, []
    checkpoint = Path(args.model)
    if checkpoint.is_file():  # an operator checkpoint: its own models directory, no segmenter
        models_dir = Path(tempfile.mkdtemp(prefix="ganpaint-bench-models-"))
        (models_dir / checkpoint.name).symlink_to(checkpoint.resolve())
        model = checkpoint_model_id(checkpoint)
        env.update(GANPAINT_MODELS_DIR=str(models_dir), GANPAINT_SEGMENTER="")
        extra = ["--models-dir", str(models_dir)]
    else:
        env["GANPAINT_DEFAULT_MODEL"] = model
    if args.zoo_dir:
        env["GANPAINT_ZOO_DIR"] = str(args.zoo_dir)
    variants = {"ganpaint_ws": {}}  # name -> extra environment of a ganpaint server
    if args.compare_full:
        variants["ganpaint_ws_full_suffix"] = {"GANPAINT_INCREMENTAL": "false"}
    ports = {name: free_port() for name in variants}
    base_port = free_port()
    serve = [sys.executable, "-m", "server.cli", "serve", "--log-level", "warning", "--port"]
    servers = {name: launch(serve + [str(ports[name])], {**env, "GANPAINT_PRECISION": args.precision, **extra_env})
               for name, extra_env in variants.items()}
    baseline = launch([sys.executable, str(ROOT / "bench" / "baseline_server.py"), "--port", str(base_port),
                       "--model", model] + (["--zoo-dir", str(args.zoo_dir)] if args.zoo_dir else []) + extra, env)
    try:
        for name, proc in servers.items():
            wait_ready(f"http://127.0.0.1:{ports[name]}/readyz", proc)
        wait_ready(f"http://127.0.0.1:{base_port}/ready", baseline)
        size = httpx.get(f"http://127.0.0.1:{ports['ganpaint_ws']}/api/models/{model}").json()["resolution"]

        def ws_factory(p: int) -> Callable:
            return lambda i, stop, lat, err: ws_painter(
                f"ws://127.0.0.1:{p}/ws/paint", f"http://127.0.0.1:{p}", model, size, i, stop,
                args.brush, lat, err, stroke=args.stroke, units=args.units)

        factories = {name: ws_factory(ports[name]) for name in servers}
        factories["baseline_http_jpeg"] = lambda i, stop, lat, err: http_painter(
            f"http://127.0.0.1:{base_port}/api/generate", model, size, i, stop, args.brush, lat, err,
            stroke=args.stroke, units=args.units)
        results: dict = {name: {} for name in factories}
        for n in args.painters:
            for name, factory in factories.items():
                latencies: list[float] = []
                errors: list[str] = []

                async def run_all() -> None:
                    stop = time.monotonic() + args.seconds
                    await asyncio.gather(*(factory(i, stop, latencies, errors) for i in range(n)))

                started = time.monotonic()
                asyncio.run(run_all())
                results[name][str(n)] = summarize(latencies, errors, time.monotonic() - started)
        speedup = {n: round(results["ganpaint_ws"][n]["edits_per_second"]
                            / max(results["baseline_http_jpeg"][n]["edits_per_second"], 1e-9), 2)
                   for n in results["ganpaint_ws"]}
        report = {"benchmark": "serve_latency", "model": args.model, "image_size": size,
                  "seconds_per_setting": args.seconds, "threads": args.threads, "precision": args.precision,
                  "stroke": args.stroke, "paint": f"units 0..{args.units - 1}" if args.units else args.brush,
                  "unchanged_pooled_mask_share": unchanged_pooled_mask_share(size, args.stroke),
                  "results": results, "throughput_ratio_vs_baseline": speedup}
        if args.compare_full:
            report["incremental_p50_vs_full_suffix"] = {
                n: round(results["ganpaint_ws"][n]["p50_ms"] / results["ganpaint_ws_full_suffix"][n]["p50_ms"], 3)
                for n in results["ganpaint_ws"]
                if results["ganpaint_ws"][n]["p50_ms"] and results["ganpaint_ws_full_suffix"][n]["p50_ms"]}
        print(json.dumps(report, indent=2))
    finally:
        for proc in [*servers.values(), baseline]:
            stop(proc)


if __name__ == "__main__":
    main()
