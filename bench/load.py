"""Load test: N concurrent painters on a real server for a fixed time (loopback only, bounded).

    python bench/load.py [--painters 32] [--seconds 60] [--model world128]

Each painter sends its next edit as soon as the previous answer (image or error) arrives. Reports
edits/s, p50/p95/p99 round trip, errors and busy replies, and the server's resident memory before
and after. Prints one JSON document.
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

from serve_latency import free_port, launch, stop, summarize, wait_ready, ws_painter  # noqa: E402

from models.zoo import DEFAULT_GENERATOR  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def painter(url: str, origin: str, model: str, size: int, index: int, stop: float, brush: str,
                  latencies: list[float], errors: list[str]) -> None:
    """A painter that moves between 5 samples and sends two drag previews for every final edit."""
    await ws_painter(url, origin, model, size, index, stop, brush, latencies, errors,
                     sample=lambda i, seq: 1000 + i * 7 + seq % 5, preview=lambda seq: seq % 3 != 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--painters", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--model", default=DEFAULT_GENERATOR)
    parser.add_argument("--brush", default="tree")
    parser.add_argument("--zoo-dir", type=Path)
    args = parser.parse_args()
    if not 1 <= args.painters <= 256 or not 1 <= args.seconds <= 600:
        raise SystemExit("painters must be 1..256 and seconds 1..600")
    env = {**os.environ, "GANPAINT_DEFAULT_MODEL": args.model, "GANPAINT_QUEUE_SIZE": str(max(64, args.painters * 2))}
    if args.zoo_dir:
        env["GANPAINT_ZOO_DIR"] = str(args.zoo_dir)
    port = free_port()
    server = launch([sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--log-level", "warning"], env)
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", server)
        import httpx

        size = httpx.get(f"http://127.0.0.1:{port}/api/models/{args.model}").json()["resolution"]
        # warm up with every painter (activation cache, allocator pools at full batch size), then measure memory
        async def warm_up() -> None:
            stop = time.monotonic() + 5
            await asyncio.gather(*(painter(f"ws://127.0.0.1:{port}/ws/paint", f"http://127.0.0.1:{port}", args.model,
                                           size, i, stop, args.brush, [], []) for i in range(args.painters)))

        asyncio.run(warm_up())
        before = rss_mb(server.pid)
        latencies: list[float] = []
        errors: list[str] = []

        async def run_all() -> None:
            stop = time.monotonic() + args.seconds
            await asyncio.gather(*(painter(f"ws://127.0.0.1:{port}/ws/paint", f"http://127.0.0.1:{port}", args.model,
                                           size, i, stop, args.brush, latencies, errors) for i in range(args.painters)))

        started = time.monotonic()
        asyncio.run(run_all())
        elapsed = time.monotonic() - started
        after = rss_mb(server.pid)
        result = summarize(latencies, errors, elapsed)
        result.update(painters=args.painters, seconds=round(elapsed, 1), busy=errors.count("busy"),
                      server_rss_mb_before=round(before, 1), server_rss_mb_after=round(after, 1),
                      memory_growth=round((after - before) / before, 4))
        print(json.dumps({"benchmark": "load", "model": args.model, "image_size": size, **result}, indent=2))
    finally:
        stop(server, 30)


if __name__ == "__main__":
    main()
