"""What an attacker, a flooding client and a broken file do to the server (issue "Hardening")."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from tests.test_server import ORIGIN, client, make_settings, recipe  # noqa: F401 - client: the shared server fixture


def test_deeply_nested_message_is_bad_json_and_the_socket_stays(tiny_zoo: Path, tmp_path: Path) -> None:
    app = create_app(make_settings(tiny_zoo, tmp_path, causal_samples=0))
    with TestClient(app) as c, c.websocket_connect("/ws/paint", headers={**ORIGIN}) as ws:
        for text in ("[" * 100_000, '{"seq": ' + "[" * 50_000 + "]" * 50_000 + "}"):
            ws.send_text(text)
            answer = json.loads(ws.receive_text())
            assert answer["type"] == "error" and answer["code"] in ("bad_json", "invalid_message")
            assert answer["seq"] is None
        ws.send_text(json.dumps({"v": 1, "type": "edit", "seq": 9, "recipe": recipe()}))
        header = json.loads(ws.receive_text())
        assert header["type"] == "image" and header["seq"] == 9
        assert ws.receive_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_corrupt_operator_checkpoint_is_answered_on_the_websocket(tiny_zoo: Path, tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "broken.pth").write_bytes(b"PK\x03\x04 not really a zip file")
    app = create_app(make_settings(tiny_zoo, tmp_path, models_dir=models_dir, causal_samples=0))
    with TestClient(app) as c:
        rest = c.get("/api/models/broken")
        assert rest.status_code == 404 and rest.json()["error"]["code"] == "model_unavailable"
        with c.websocket_connect("/ws/paint", headers={**ORIGIN}) as ws:
            ws.send_text(json.dumps({"v": 1, "type": "edit", "seq": 4, "recipe": {**recipe(), "model": "broken"}}))
            answer = json.loads(ws.receive_text())
            assert answer == {"type": "error", "seq": 4, "code": "model_unavailable", "message": answer["message"]}
            assert "broken.pth" in answer["message"]
            ws.send_text(json.dumps({"v": 1, "type": "edit", "seq": 5, "recipe": recipe()}))
            assert json.loads(ws.receive_text())["type"] == "image"


def test_a_flooding_socket_does_not_starve_a_normal_painter(tiny_zoo: Path, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """One socket sends edits as fast as it can; the other sends one edit, waits for its answer, and
    so on. Every edit of the normal painter is answered with an image (never ``busy``), the flood
    holds at most one place in the queue, and dropping its superseded edits writes no log line."""
    import uvicorn
    import websockets

    from tests.test_server_live import free_port, run_async

    port = free_port()
    app = create_app(make_settings(tiny_zoo, tmp_path, causal_samples=0, queue_size=8, max_batch=2, port=port))

    async def scenario(port: int) -> tuple[list[str], int]:
        url = f"ws://127.0.0.1:{port}/ws/paint"
        origin = f"http://127.0.0.1:{port}"
        stop = asyncio.Event()
        flood_sent = 0

        async def flood() -> None:
            nonlocal flood_sent
            async with websockets.connect(url, origin=origin, max_size=None) as ws:
                async def drain() -> None:
                    async for _ in ws:
                        pass

                reader = asyncio.create_task(drain())
                while not stop.is_set():
                    flood_sent += 1
                    await ws.send(json.dumps({"v": 1, "type": "edit", "seq": flood_sent,
                                              "recipe": recipe(sample=flood_sent % 50)}))
                    await asyncio.sleep(0)
                reader.cancel()

        async def normal() -> list[str]:
            kinds = []
            async with websockets.connect(url, origin=origin, max_size=None) as ws:
                for seq in range(25):
                    await ws.send(json.dumps({"v": 1, "type": "edit", "seq": seq, "recipe": recipe(sample=100 + seq)}))
                    header = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    kinds.append(header.get("code", header["type"]))
                    if header["type"] == "image":
                        await ws.recv()
            return kinds

        flooder = asyncio.create_task(flood())
        await asyncio.sleep(0.5)  # the flood is on before the normal painter starts
        kinds = await normal()
        stop.set()
        await flooder
        return kinds, flood_sent

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        with caplog.at_level("ERROR"):
            kinds, flood_sent = run_async(scenario(port))
            server_errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        metrics = app.state.ganpaint.metrics.render()
        metrics = metrics.decode() if isinstance(metrics, bytes) else metrics
    finally:
        server.should_exit = True
        thread.join(10)
    assert kinds == ["image"] * 25
    assert flood_sent > 200  # it really flooded
    def counter(prefix: str) -> float:
        lines = [line for line in metrics.splitlines() if line.startswith(prefix)]
        return float(lines[0].split()[-1]) if lines else 0.0

    # the flood's older recipes were dropped (counted, not logged) and its reading was slowed down
    assert counter('ganpaint_edits_dropped_total{reason="superseded"}') > 10
    assert counter('ganpaint_ws_messages_total{type="throttled"}') > 10
    assert not [m for m in server_errors if "Superseded" in m or "never retrieved" in m]


def test_oversize_bodies_get_the_json_error_and_photos_are_accepted(client: TestClient) -> None:  # noqa: F811
    import io

    import numpy as np
    from PIL import Image

    # declared too large: refused before reading, in the one error shape
    declared = client.post("/api/render", content=b"{" + b" " * (2 << 20) + b"}",
                           headers={"content-type": "application/json"})
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "too_large"
    assert "1,048,576" in declared.json()["error"]["message"]

    # no Content-Length (chunked): counted as it arrives
    def chunks():
        for _ in range(40):
            yield b" " * 65536

    chunked = client.post("/api/render", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "too_large", (chunked.text, chunked.request.headers)

    # a photo-sized upload (a 1600 x 1200 noisy PNG, over 3 MB) is explained, downscaled on the server
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="PNG")
    assert len(buffer.getvalue()) > 3 << 20
    response = client.post("/api/cam", files={"image": ("photo.png", buffer.getvalue(), "image/png")},
                           data={"methods": "cam"})
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["method"] == "cam"
    # a large JPEG photo too
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=95)
    response = client.post("/api/cam", files={"image": ("photo.jpg", buffer.getvalue(), "image/jpeg")},
                           data={"methods": "cam"})
    assert response.status_code == 200, response.text


def test_token_mode_sessions_rate_limit_and_private_details(tiny_zoo: Path, tmp_path: Path) -> None:
    from server.auth import SESSION_COOKIE

    app = create_app(make_settings(tiny_zoo, tmp_path, token="s3cret", causal_samples=0, login_per_minute=6))
    bearer = {"authorization": "Bearer s3cret"}
    with TestClient(app) as c:
        # health: a bare answer for load balancers, the details and the metrics only with the token
        assert c.get("/livez").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"status": "ready"}
        assert "models" in c.get("/readyz", headers=bearer).json()
        assert c.get("/metrics").status_code == 401
        assert "ganpaint_queue_depth" in c.get("/metrics", headers=bearer).text

        # each sign-in opens its own random session; the value is not derived from the token
        first = c.post("/api/login", json={"token": "s3cret"}).cookies[SESSION_COOKIE]
        c.cookies.clear()
        second = c.post("/api/login", json={"token": "s3cret"}).cookies[SESSION_COOKIE]
        assert first != second and len(first) >= 40
        c.cookies.clear()
        for session in (first, second):
            c.cookies.set(SESSION_COOKIE, session)
            assert c.get("/api/models").status_code == 200
            c.cookies.clear()
        # logout revokes the session on the server: the old value no longer opens anything
        c.cookies.set(SESSION_COOKIE, first)
        assert c.post("/api/logout").status_code == 204
        c.cookies.clear()
        c.cookies.set(SESSION_COOKIE, first)
        assert c.get("/api/models").status_code == 401
        c.cookies.clear()
        c.cookies.set(SESSION_COOKIE, second)
        assert c.get("/api/models").status_code == 200  # other sessions stay
        c.cookies.clear()

        # sessions expire
        sessions = app.state.ganpaint.sessions
        sessions._clock = lambda: __import__("time").time() + sessions.ttl_s + 1
        c.cookies.set(SESSION_COOKIE, second)
        assert c.get("/api/models").status_code == 401
        c.cookies.clear()

        # sign-in attempts are rate limited per client (5 at once, then 6 a minute here)
        codes = [c.post("/api/login", json={"token": "guess"}).status_code for _ in range(8)]
        assert codes[:2] == [401, 401] and codes[-1] == 429
        limited = c.post("/api/login", json={"token": "s3cret"})  # even the right token waits
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "too_many_attempts"
        assert int(limited.headers["retry-after"]) >= 1


def test_refused_websockets_close_with_1008_and_say_why(tiny_zoo: Path, tmp_path: Path) -> None:
    """Against a real uvicorn: a refused socket is accepted and closed with 1008 and a reason (not an
    HTTP 403 at the handshake, which a browser sees only as 1006)."""
    import websockets

    from tests.test_server_live import free_port, run_async

    port = free_port()
    app = create_app(make_settings(tiny_zoo, tmp_path, token="s3cret", causal_samples=0, port=port))
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    async def closes(origin: str, protocols: list[str]) -> tuple[int, str]:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/paint", origin=origin,
                                      subprotocols=protocols) as ws:
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code, closed.rcvd.reason
        raise AssertionError("not closed")

    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        code, reason = run_async(closes("http://proxy.example:8080", ["ganpaint.v1", "token.s3cret"]))
        assert code == 1008 and "http://proxy.example:8080" in reason and "GANPAINT_ALLOWED_ORIGINS" in reason
        code, reason = run_async(closes(f"http://127.0.0.1:{port}", ["ganpaint.v1"]))
        assert code == 1008 and "/login" in reason
    finally:
        server.should_exit = True
        thread.join(10)


def test_api_docs_work_offline(client: TestClient) -> None:  # noqa: F811
    page = client.get("/docs").text
    assert "cdn.jsdelivr" not in page and "/docs-assets/swagger-ui-bundle.js" in page
    bundle = client.get("/docs-assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    assert client.get("/docs-assets/swagger-ui.css").status_code == 200
    redoc = client.get("/redoc").text
    assert "cdn" not in redoc and "fonts.googleapis" not in redoc and "/docs-assets/redoc.standalone.js" in redoc


def test_unit_strips_are_made_once(client: TestClient) -> None:  # noqa: F811
    first = client.get("/api/models/tiny/layers/layer4/units/3/top.png")
    again = client.get("/api/models/tiny/layers/layer4/units/3/top.png")
    assert first.status_code == again.status_code == 200
    assert first.headers["x-cache"] == "miss" and again.headers["x-cache"] == "hit"
    assert first.content == again.content and first.content[:8] == b"\x89PNG\r\n\x1a\n"
    other = client.get("/api/models/tiny/layers/layer4/units/3/top.png", params={"count": 2})
    assert other.headers["x-cache"] == "miss" and other.content != first.content
