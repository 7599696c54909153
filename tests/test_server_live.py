"""Against a real uvicorn on 127.0.0.1: painting over a real websocket, frame limits, clean shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets

from server.schemas import MaskSpec


def run_async(coro):
    """asyncio.run in a fresh thread: other tests (Playwright's sync API) may leave a loop running here."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_server(tiny_zoo: Path, tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    env = {**os.environ, "GANPAINT_ZOO_DIR": str(tiny_zoo), "GANPAINT_DEFAULT_MODEL": "tiny",
           "GANPAINT_SEGMENTER": "tiny/segmenter", "GANPAINT_CLASSIFIER": "tiny/classifier",
           "GANPAINT_CACHE_DIR": str(tmp_path_factory.mktemp("live")),
           "GANPAINT_DISSECT_SAMPLES": "40", "GANPAINT_CAUSAL_SAMPLES": "4", "GANPAINT_WS_MAX_BYTES": "65536",
           "OMP_NUM_THREADS": "1"}
    # output to a file, not a pipe: nobody reads a pipe while the tests run, and a full one blocks the server
    log_path = tmp_path_factory.mktemp("live-log") / "server.log"
    log_file = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--device", "cpu",
                             "--log-level", "warning"], env=env, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(f"{base}/readyz", timeout=2)
            if ready.status_code == 200 and ready.json()["models"][0]["tables"].get("layer4", {}).get("status") == "ready":
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(log_path.read_text())
        time.sleep(0.3)
    else:
        proc.kill()
        raise RuntimeError("server did not become ready")
    yield {"base": base, "ws": f"ws://127.0.0.1:{port}/ws/paint", "port": port, "proc": proc, "log": log_path}
    if proc.poll() is None:
        proc.kill()
    log_file.close()


def edit(seq: int, strokes: list | None = None) -> str:
    return json.dumps({"v": 1, "type": "edit", "seq": seq, "recipe": {"v": 1, "model": "tiny", "sample": 3,
                                                                       "strokes": strokes or []}})


def test_paint_over_a_real_websocket(live_server: dict) -> None:
    mask = np.zeros((16, 16), bool)
    mask[4:12, 4:12] = True

    async def session() -> tuple[bytes, bytes, bytes]:
        origin = f"http://127.0.0.1:{live_server['port']}"
        async with websockets.connect(live_server["ws"], origin=origin) as ws:
            await ws.send(edit(1))
            assert json.loads(await ws.recv())["seq"] == 1
            original = await ws.recv()
            await ws.send(edit(2, [{"brush": "tree", "strength": 1.0, "mask": MaskSpec.from_array(mask).model_dump()}]))
            assert json.loads(await ws.recv())["seq"] == 2
            painted = await ws.recv()
            await ws.send(edit(3))
            assert json.loads(await ws.recv())["seq"] == 3
            undone = await ws.recv()
            return original, painted, undone

    original, painted, undone = run_async(session())
    assert painted != original and undone == original
    assert httpx.get(f"{live_server['base']}/api/models/tiny/samples/3.png").content == original


def test_oversize_frame_closes_with_1009_and_server_survives(live_server: dict) -> None:
    async def session() -> int | None:
        origin = f"http://127.0.0.1:{live_server['port']}"
        async with websockets.connect(live_server["ws"], origin=origin, max_size=None) as ws:
            await ws.send("x" * 200_000)
            try:
                await ws.recv()
            except websockets.ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None
        return None

    assert run_async(session()) == 1009
    assert httpx.get(f"{live_server['base']}/livez").status_code == 200


def test_leaving_a_job_stream_is_quiet(live_server: dict) -> None:
    """A page that leaves while its job runs is normal: no traceback in the server's log, and the
    job carries on."""
    base = live_server["base"]
    job = httpx.post(f"{base}/api/featviz", json={"layer": "features.block4", "units": [5], "steps": 2048, "seed": 11}).json()

    async def session() -> dict:
        origin = f"http://127.0.0.1:{live_server['port']}"
        async with websockets.connect(f"ws://127.0.0.1:{live_server['port']}/ws/jobs/{job['id']}", origin=origin) as ws:
            return json.loads(await ws.recv())

    assert run_async(session())["id"] == job["id"]
    time.sleep(2.0)  # the job reports progress: the server tries to send to the closed socket
    assert httpx.get(f"{base}/api/jobs/{job['id']}").json()["status"] in ("queued", "running", "done")
    httpx.delete(f"{base}/api/jobs/{job['id']}")
    log = live_server["log"].read_text()
    assert "Exception in ASGI application" not in log and "WebSocketDisconnect" not in log, log[-2000:]


def test_bad_origin_real_server(live_server: dict) -> None:
    async def session() -> None:
        async with websockets.connect(live_server["ws"], origin="http://evil.example") as ws:
            await ws.recv()

    with pytest.raises((websockets.ConnectionClosed, websockets.InvalidStatus)):
        run_async(session())


def test_sigterm_closes_clients_and_exits(live_server: dict) -> None:
    async def session() -> int | None:
        origin = f"http://127.0.0.1:{live_server['port']}"
        async with websockets.connect(live_server["ws"], origin=origin) as ws:
            await ws.send(edit(1))
            await ws.recv()
            await ws.recv()
            live_server["proc"].send_signal(signal.SIGTERM)
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 15)
            except websockets.ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None

    code = run_async(session())
    assert code in (1001, 1012)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says how it ended
    assert live_server["proc"].wait(20) in (0, -signal.SIGTERM)
    output = live_server["log"].read_text()
    assert "Traceback" not in output
