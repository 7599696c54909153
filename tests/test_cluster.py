"""The app on two Ray Serve replicas on 127.0.0.1 (``ganpaint serve --cluster``): REST and the
painting websocket through Serve's proxy give the same bytes as the plain app, for many painters."""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

pytest.importorskip("ray.serve")
pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def serve_base(tiny_zoo: Path, tmp_path_factory: pytest.TempPathFactory):
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import serve

    from server.cluster import ClusterConfig, deploy
    from tests.test_server import make_settings
    from tests.test_server_live import free_port

    port = free_port()
    settings = make_settings(tiny_zoo, tmp_path_factory.mktemp("cluster"), port=port, table_builds="none")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        deploy(settings, ClusterConfig(replicas=2, painters_per_replica=16, cpus_per_replica=0.5))
        yield f"127.0.0.1:{port}", settings
    finally:
        serve.shutdown()
        ray.shutdown()


def test_serve_replicas_paint_the_same_bytes_as_the_plain_app(serve_base, tiny_zoo: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from websockets.sync.client import connect

    from server.app import create_app
    from tests.test_server import make_settings

    address, settings = serve_base
    recipe = {"model": "tiny", "sample": 7, "strokes": []}
    with TestClient(create_app(make_settings(tiny_zoo, tmp_path, table_builds="none"))) as plain:
        expected = plain.post("/api/render", json=recipe).content
    assert httpx.get(f"http://{address}/readyz", timeout=30).status_code == 200
    assert httpx.post(f"http://{address}/api/render", json=recipe, timeout=60).content == expected
    with ExitStack() as stack:  # 8 painters at once, spread by Serve over the replicas
        sockets = [stack.enter_context(connect(f"ws://{address}/ws/paint", origin=f"http://{address}",
                                               subprotocols=["ganpaint.v1"], open_timeout=30)) for _ in range(8)]
        for seq, ws in enumerate(sockets):
            ws.send(json.dumps({"v": 1, "type": "edit", "seq": seq, "recipe": recipe}))
        for seq, ws in enumerate(sockets):
            header = json.loads(ws.recv(timeout=60))
            assert header["type"] == "image" and header["seq"] == seq, header
            assert ws.recv(timeout=60) == expected


def test_a_killed_replica_loses_no_painter(serve_base) -> None:
    """Kill one of the two replicas while 6 painters are connected: each painter whose socket died
    reconnects (as the page does) and, resending its whole recipe, has its image within 2 s; the
    others paint on as if nothing happened."""
    import time

    import numpy as np
    import ray
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from server.schemas import MaskSpec

    address, _ = serve_base
    mask = np.zeros((16, 16), bool)
    mask[8:, :8] = True
    stroke = {"units": [0, 1, 2, 3], "action": "add", "strength": 1.0, "mask": MaskSpec.from_array(mask).model_dump()}
    recipe = {"model": "tiny", "sample": 11, "strokes": [stroke, {**stroke, "units": [5, 6]}]}
    unedited = httpx.post(f"http://{address}/api/render", json={"model": "tiny", "sample": 11}, timeout=60).content

    def open_painter():  # type: ignore[no-untyped-def]
        return connect(f"ws://{address}/ws/paint", origin=f"http://{address}", subprotocols=["ganpaint.v1"],
                       open_timeout=30)

    def paint(ws, seq: int) -> bytes:  # type: ignore[no-untyped-def]
        ws.send(json.dumps({"v": 1, "type": "edit", "seq": seq, "recipe": recipe}))
        header = json.loads(ws.recv(timeout=30))
        assert header["type"] == "image", header
        data = ws.recv(timeout=30)
        assert isinstance(data, bytes)
        return data

    stack = ExitStack()
    painters = [stack.enter_context(open_painter()) for _ in range(6)]
    expected = paint(painters[0], 0)
    assert expected != unedited  # the strokes show: a reconnect that dropped them would be seen
    for ws in painters[1:]:
        assert paint(ws, 0) == expected
    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True) if "SERVE_REPLICA" in a["name"]]
    assert len(replicas) == 2
    ray.kill(ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]), no_restart=False)
    time.sleep(0.5)
    reconnected = 0
    for i, ws in enumerate(painters):
        try:
            assert paint(ws, 1) == expected
            continue
        except (ConnectionClosed, TimeoutError, OSError):
            pass
        started = time.monotonic()
        painters[i] = stack.enter_context(open_painter())
        assert paint(painters[i], 2) == expected  # the whole recipe again: no stroke lost
        assert time.monotonic() - started < 2.0
        reconnected += 1
    stack.close()
    assert reconnected >= 1  # the killed replica held some of them
