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
