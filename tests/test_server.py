"""The server in-process (TestClient): REST, websocket protocol v1, latest-wins, errors, safety."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from dissect_core.tables import TABLE_VERSION
from models.zoo import list_zoo
from server.app import create_app
from server.schemas import MaskSpec
from server.settings import Settings

ORIGIN = {"origin": "http://127.0.0.1:8000"}  # copy it per use: the TestClient adds headers to the dict it is given


def make_settings(tiny_zoo: Path, tmp: Path, **extra: object) -> Settings:
    values = {"zoo_dir": tiny_zoo, "default_model": "tiny", "segmenter": "tiny/segmenter", "cache_dir": tmp / "cache",
              "classifier": "tiny/classifier",
              "dissect_samples": 40, "causal_samples": 4, "device": "cpu", "precision": "fp32", **extra}
    return Settings(**values)


@pytest.fixture(scope="module")
def client(tiny_zoo: Path, tmp_path_factory: pytest.TempPathFactory):
    app = create_app(make_settings(tiny_zoo, tmp_path_factory.mktemp("server")))
    with TestClient(app) as test_client:
        app.state.ganpaint.jobs.wait_idle(60)
        yield test_client


def left_half_mask(size: int = 16) -> dict:
    mask = np.zeros((size, size), bool)
    mask[:, : size // 2] = True
    return MaskSpec.from_array(mask).model_dump()


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def recipe(strokes: list | None = None, sample: int = 3) -> dict:
    return {"v": 1, "model": "tiny", "sample": sample, "strokes": strokes or []}


def test_health_and_models(client: TestClient) -> None:
    assert client.get("/livez").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["models"][0]["tables"]["layer4"]["status"] == "ready"
    models = client.get("/api/models").json()
    assert models[0]["id"] == "tiny" and models[0]["default"] is True
    layers = client.get("/api/models/tiny").json()["layers"]
    assert {"name": "layer4", "shape": [16, 8, 8]} in layers
    page = client.get("/api/models/tiny/samples", params={"offset": 10, "limit": 4}).json()
    assert page["ids"] == [10, 11, 12, 13]
    rand = client.get("/api/models/tiny/samples", params={"random": True, "seed": 5, "limit": 8}).json()["ids"]
    assert rand == client.get("/api/models/tiny/samples", params={"random": True, "seed": 5, "limit": 8}).json()["ids"]


def test_sample_png_is_the_generator_output(client: TestClient) -> None:
    from models.imaging import to_uint8
    from models.samples import z_tensor

    response = client.get("/api/models/tiny/samples/3.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    generator = client.app.state.ganpaint.catalog.get("tiny").generator
    with torch.no_grad():
        expected = to_uint8(generator(z_tensor([3], generator.z_dim)))[0]
    assert np.array_equal(png(response.content), expected.astype(int))


@pytest.mark.skipif("world64" not in list_zoo(), reason="needs the world64 zoo model")
def test_bf16_rendering_is_close_to_fp32_and_undo_is_exact(tiny_zoo: Path, tmp_path: Path) -> None:
    """``precision=bf16`` renders the layers after the edit layer in bfloat16: pixels stay within a
    few levels of float32, and a recipe always gives the same bytes (undo restores the original)."""
    from models.imaging import to_uint8
    from models.samples import z_tensor
    from models.zoo import load_model

    settings = make_settings(tiny_zoo, tmp_path, default_model="world64", zoo_dir=None, segmenter="world64/segmenter",
                             classifier="world64/classifier", precision="bf16")
    generator = load_model("world64")
    with torch.no_grad():
        expected = to_uint8(generator(z_tensor([7], generator.z_dim)))[0].astype(int)
    with TestClient(create_app(settings)) as bf16_client:
        assert bf16_client.app.state.ganpaint.executor.painting.dtype == torch.bfloat16
        first = bf16_client.get("/api/models/world64/samples/7.png").content
        diff = np.abs(png(first) - expected)
        assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 8, (diff.mean(), diff.max())
        assert not np.array_equal(png(first), expected)  # it really ran in bfloat16
        mask = np.zeros((64, 64), bool)
        mask[40:60, 10:40] = True
        stroke = {"brush": "tree", "action": "add", "strength": 0.8, "mask": MaskSpec.from_array(mask).model_dump()}
        edited = bf16_client.post("/api/render", json={"v": 1, "model": "world64", "sample": 7, "strokes": [stroke]})
        assert edited.status_code == 200 and edited.content != first
        undone = bf16_client.post("/api/render", json={"v": 1, "model": "world64", "sample": 7, "strokes": []})
        assert undone.content == first


def test_render_add_changes_the_painted_region_and_undo_restores(client: TestClient) -> None:
    original = client.post("/api/render", json=recipe()).content
    stroke = {"brush": "tree", "action": "add", "strength": 1.0, "mask": left_half_mask()}
    edited = client.post("/api/render", json=recipe([stroke]))
    assert edited.status_code == 200
    diff = np.abs(png(edited.content) - png(original)).sum(-1)
    inside, outside = diff[:, :6].mean(), diff[:, 11:].mean()
    assert inside > 5 and inside > 4 * outside
    assert client.post("/api/render", json=recipe()).content == original  # undo = recipe without the stroke


def test_dissection_endpoints(client: TestClient) -> None:
    table = client.get("/api/models/tiny/layers/layer4/dissection").json()
    assert table["version"] == TABLE_VERSION and len(table["units"]) == 16 and "tree" in table["concepts"]
    unit = client.get("/api/models/tiny/layers/layer4/units/2").json()
    assert unit["unit"] == 2 and len(unit["top_images"]) > 0
    strip = client.get("/api/models/tiny/layers/layer4/units/2/top.png", params={"count": 3})
    assert Image.open(io.BytesIO(strip.content)).size == (48, 16)
    brushes = client.get("/api/models/tiny/layers/layer4/brushes").json()
    assert brushes["units"] == 16 and all(len(b["units"]) == len(b["levels"]) for b in brushes["brushes"])
    active = client.get("/api/models/tiny/layers/layer4/active", params={"sample": 3, "x": 5, "y": 9}).json()
    assert active["cell"] == [4, 2] and len(active["units"]) == 16
    rel = [u["relative"] for u in active["units"]]
    assert rel == sorted(rel, reverse=True)


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), [
    ("get", "/api/models/nope", None, 404, "unknown_model"),
    ("get", "/api/models/..%2F..%2Fetc", None, 404, None),
    ("get", "/api/models/tiny/layers/layer99/dissection", None, 404, "unknown_layer"),
    ("get", "/api/models/tiny/layers/layer4/units/999", None, 404, "unknown_unit"),
    ("get", "/api/models/tiny/samples/-1.png", None, 422, "invalid_request"),
    ("post", "/api/render", {"v": 1, "model": "tiny", "sample": "3"}, 422, "invalid_request"),
    ("post", "/api/render", {"v": 1, "model": "tiny", "sample": 3, "extra": 1}, 422, "invalid_request"),
    ("post", "/api/render", {"v": 1, "model": "tiny", "sample": 3, "z": [0.0]}, 422, "invalid_request"),
    ("post", "/api/render", {"v": 1, "model": "../../x", "sample": 3}, 422, "invalid_request"),
    ("post", "/api/render", recipe([{"brush": "dragon", "mask": left_half_mask()}]), 422, "unknown_brush"),
    ("post", "/api/render", recipe([{"units": [99], "mask": left_half_mask()}]), 422, "bad_units"),
    ("post", "/api/render", recipe([{"brush": "tree", "mask": {"width": 16, "height": 16, "data": "AAAA"}}]), 422,
     "invalid_request"),
])
def test_bad_requests_get_documented_errors(client: TestClient, method: str, path: str, body: dict | None,
                                            status: int, code: str | None) -> None:
    response = getattr(client, method)(path, **({"json": body} if body is not None else {}))
    assert response.status_code == status, response.text
    if code:
        assert response.json()["error"]["code"] == code
    assert client.get("/livez").status_code == 200


def test_malformed_json_and_oversize_body(client: TestClient) -> None:
    bad = client.post("/api/render", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    huge = client.post("/api/render", content=b"x" * (2 << 20), headers={"content-type": "application/json"})
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "too_large"


def test_websocket_paint_protocol(client: TestClient) -> None:
    with client.websocket_connect("/ws/paint", headers={**ORIGIN}) as ws:
        ws.send_text(json.dumps({"v": 1, "type": "edit", "seq": 1, "recipe": recipe()}))
        header = json.loads(ws.receive_text())
        image = ws.receive_bytes()
        assert header["type"] == "image" and header["seq"] == 1 and header["format"] == "png"
        assert header["bytes"] == len(image) and header["width"] == 16
        assert image == client.get("/api/models/tiny/samples/3.png").content
        # errors keep the connection open
        ws.send_text("{nope")
        assert json.loads(ws.receive_text())["code"] == "bad_json"
        ws.send_text(json.dumps({"v": 1, "type": "edit", "seq": 2, "recipe": recipe([{"brush": "dragon",
                                 "mask": left_half_mask()}])}))
        error = json.loads(ws.receive_text())
        assert error == {"type": "error", "seq": 2, "code": "unknown_brush", "message": "unknown brush 'dragon'"}
        ws.send_text(json.dumps({"v": 1, "type": "edit", "seq": 3, "recipe": {"model": "tiny"}}))
        assert json.loads(ws.receive_text())["code"] == "invalid_message"
        ws.send_bytes(b"\x00\x01")
        assert json.loads(ws.receive_text())["code"] == "unsupported"
        ws.send_text(json.dumps({"v": 1, "type": "edit", "seq": 4, "recipe": {**recipe(), "model": "nope"}}))
        assert json.loads(ws.receive_text())["code"] == "unknown_model"
        ws.send_text(json.dumps({"v": 1, "type": "edit", "seq": 5, "preview": True, "recipe": recipe()}))
        header = json.loads(ws.receive_text())
        assert header["seq"] == 5 and header["format"] == "jpeg"
        assert ws.receive_bytes()[:2] == b"\xff\xd8"


def test_latest_wins_on_one_connection(client: TestClient) -> None:
    executor = client.app.state.ganpaint.executor
    before = executor.renders
    stroke = {"brush": "tree", "action": "add", "mask": left_half_mask()}
    with client.websocket_connect("/ws/paint", headers={**ORIGIN}) as ws:
        for seq in range(20):
            strength = seq / 19
            ws.send_text(json.dumps({"v": 1, "type": "edit", "seq": seq,
                                     "recipe": recipe([{**stroke, "strength": strength}])}))
        answers = []
        while not answers or answers[-1][0]["seq"] != 19:
            header = json.loads(ws.receive_text())
            answers.append((header, ws.receive_bytes()))
    renders = executor.renders - before
    assert renders < 20 and len(answers) == renders
    last = client.post("/api/render", json=recipe([{**stroke, "strength": 1.0}])).content
    assert answers[-1][1] == last


def test_bad_origin_is_refused(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as exc:
        with client.websocket_connect("/ws/paint", headers={"origin": "http://evil.example"}) as ws:
            ws.receive_text()
    assert exc.value.code == 1008
    assert client.get("/livez").status_code == 200


def test_metrics_expose_painting(client: TestClient) -> None:
    text = client.get("/metrics").text
    for name in ("ganpaint_ws_edit_latency_seconds_bucket", "ganpaint_queue_depth", "ganpaint_batch_size_bucket",
                 "ganpaint_edits_dropped_total", "ganpaint_ws_connections"):
        assert name in text


def test_token_protects_rest_and_websocket(tiny_zoo: Path, tmp_path: Path) -> None:
    app = create_app(make_settings(tiny_zoo, tmp_path, token="s3cret", causal_samples=0))
    with TestClient(app) as c:
        assert c.get("/api/models").status_code == 401
        assert c.get("/api/models", headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/livez").status_code == 200
        with pytest.raises(WebSocketDisconnect) as exc:
            with c.websocket_connect("/ws/paint", headers={**ORIGIN}) as ws:
                ws.receive_text()
        assert exc.value.code == 1008
        with c.websocket_connect("/ws/paint", headers={**ORIGIN}, subprotocols=["ganpaint.v1", "token.s3cret"]) as ws:
            ws.send_text(json.dumps({"v": 1, "type": "edit", "seq": 1, "recipe": recipe()}))
            assert json.loads(ws.receive_text())["type"] == "image"


def test_token_mode_guards_job_streams_and_signs_browsers_in(tiny_zoo: Path, tmp_path: Path) -> None:
    """/ws/jobs refuses a connection without the token (job ids are guessable hashes); the login
    endpoint exchanges the token for an HttpOnly, SameSite=Strict cookie accepted everywhere."""
    from server.auth import SESSION_COOKIE

    app = create_app(make_settings(tiny_zoo, tmp_path, token="s3cret", causal_samples=0))
    bearer = {"authorization": "Bearer s3cret"}
    with TestClient(app) as c:
        job = c.post("/api/featviz", json={"layer": "features.block3", "units": [1], "steps": 4}, headers=bearer).json()
        for headers, protocols in (({**ORIGIN}, []), ({**ORIGIN}, ["token.wrong"])):
            with pytest.raises(WebSocketDisconnect) as exc:
                with c.websocket_connect(f"/ws/jobs/{job['id']}", headers=headers, subprotocols=protocols) as ws:
                    ws.receive_text()
            assert exc.value.code == 1008
        with c.websocket_connect(f"/ws/jobs/{job['id']}", headers={**ORIGIN}, subprotocols=["token.s3cret"]) as ws:
            assert json.loads(ws.receive_text())["id"] == job["id"]

        assert c.get("/api/session").json() == {"token_required": True, "authenticated": False}
        assert c.post("/api/login", json={"token": "nope"}).status_code == 401
        assert SESSION_COOKIE not in c.cookies
        login = c.post("/api/login", json={"token": "s3cret"})
        assert login.status_code == 204
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "s3cret" not in cookie
        # the cookie now opens REST (also image URLs, which cannot carry a header) and both websockets
        assert c.get("/api/session").json()["authenticated"] is True
        assert c.get("/api/models").status_code == 200
        assert c.get("/api/models/tiny/samples/3.png").headers["content-type"] == "image/png"
        with c.websocket_connect(f"/ws/jobs/{job['id']}", headers={**ORIGIN}) as ws:
            assert json.loads(ws.receive_text())["id"] == job["id"]
        with c.websocket_connect("/ws/paint", headers={**ORIGIN}, subprotocols=["ganpaint.v1"]) as ws:
            ws.send_text(json.dumps({"v": 1, "type": "edit", "seq": 1, "recipe": recipe()}))
            assert json.loads(ws.receive_text())["type"] == "image"
        # a forged cookie is refused; logging out clears it
        c.cookies.clear()  # (httpx2's jar would otherwise keep the real one beside the forged one)
        c.cookies.set(SESSION_COOKIE, "0" * 64)
        assert c.get("/api/models").status_code == 401
        c.cookies.clear()
        c.post("/api/login", json={"token": "s3cret"})
        assert "max-age=0" in c.post("/api/logout").headers["set-cookie"].lower()


def hold_painting(monkeypatch: pytest.MonkeyPatch, executor, before) -> None:
    """Run ``before(recipe)`` on the worker thread ahead of each render (to block or fail it)."""
    strokes = executor.painting.strokes

    def held(model, layer, recipe):
        before(recipe)
        return strokes(model, layer, recipe)

    monkeypatch.setattr(executor.painting, "strokes", held)


def test_executor_failure_hits_one_request_only(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    executor = client.app.state.ganpaint.executor

    def fail_sample_7(recipe) -> None:
        if recipe.sample == 7:
            raise RuntimeError("injected fault")

    hold_painting(monkeypatch, executor, fail_sample_7)
    failed = client.post("/api/render", json=recipe(sample=7))
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "render_failed"
    assert client.post("/api/render", json=recipe(sample=8)).status_code == 200


def test_busy_when_the_queue_is_full(tiny_zoo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import queue as queue_module

    from server.runtime import Busy
    from server.schemas import Recipe
    from tests.test_server_live import run_async

    app = create_app(make_settings(tiny_zoo, tmp_path, queue_size=1, causal_samples=0))
    with TestClient(app) as c:
        executor = app.state.ganpaint.executor
        model = app.state.ganpaint.catalog.get("tiny")
        gate = __import__("threading").Event()
        hold_painting(monkeypatch, executor, lambda recipe: gate.wait(5))

        async def flood() -> list:
            tasks = [asyncio.ensure_future(executor.render(model, Recipe(model="tiny", sample=i))) for i in range(4)]
            await asyncio.sleep(0.5)
            gate.set()
            return await asyncio.gather(*tasks, return_exceptions=True)

        results = run_async(flood())
        monkeypatch.undo()
        busy = [r for r in results if isinstance(r, Busy)]
        done = [r for r in results if not isinstance(r, Exception)]
        assert len(busy) >= 2 and len(done) >= 1  # a queue of one: at most one waiting, one running
        # over HTTP a full queue is a 503 with Retry-After
        original = executor._queue.put_nowait

        def full(item: object) -> None:
            raise queue_module.Full

        executor._queue.put_nowait = full
        try:
            response = c.post("/api/render", json=recipe(sample=1))
        finally:
            executor._queue.put_nowait = original
        assert response.status_code == 503 and response.json()["error"]["code"] == "busy"
        assert response.headers["retry-after"] == "1"


def test_operator_models_dir_paints_with_explicit_units(tiny_zoo: Path, tmp_path: Path) -> None:
    import torch

    from models.checkpoints import save_weights
    from models.proggan import ProgressiveGenerator
    from tests.conftest import released_state_dict

    models_dir = tmp_path / "models"
    models_dir.mkdir()
    torch.save(released_state_dict([16, 16, 16, 8, 8], seed=2), models_dir / "Church_LSUN.pth")
    save_weights(ProgressiveGenerator([8, 8, 8]).state_dict(), models_dir / "small.safetensors")
    (models_dir / "notes.txt").write_text("ignored")
    app = create_app(make_settings(tiny_zoo, tmp_path, models_dir=models_dir, segmenter=None, causal_samples=0))
    with TestClient(app) as c:
        ids = [m["id"] for m in c.get("/api/models").json()]
        assert ids == ["tiny", "church_lsun", "small"]
        assert c.get("/api/models/church_lsun").json()["resolution"] == 32
        # no segmenter: no table, no brushes, but explicit units paint
        assert c.get("/api/models/church_lsun/layers/layer4/brushes").json()["error"]["code"] == "no_table"
        mask = np.zeros((32, 32), bool)
        mask[8:24, 8:24] = True
        body = {"v": 1, "model": "church_lsun", "sample": 1,
                "strokes": [{"units": [0, 1, 2, 3], "strength": 1.0, "mask": MaskSpec.from_array(mask).model_dump()}]}
        edited = c.post("/api/render", json=body)
        plain = c.get("/api/models/church_lsun/samples/1.png")
        assert edited.status_code == 200 and edited.content != plain.content
        diff = np.abs(png(edited.content) - png(plain.content)).sum(-1)
        assert diff[10:22, 10:22].mean() > diff[:4, :4].mean()
        with c.websocket_connect("/ws/paint", headers={**ORIGIN}) as ws:
            ws.send_text(json.dumps({"v": 1, "type": "edit", "seq": 1, "recipe": {**body, "strokes": [
                {"brush": "tree", "mask": MaskSpec.from_array(mask).model_dump()}]}}))
            assert json.loads(ws.receive_text())["code"] == "no_brushes"


def _png_bytes(width: int, height: int, color: tuple[int, int, int] = (90, 140, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_cam_endpoint_on_world_sample_and_upload(client: TestClient) -> None:
    from models.world import SCENES

    response = client.post("/api/cam", data={"sample": "4", "methods": "cam,gradcam", "top_k": "2", "include_raw": "true"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["method"] for r in body["results"]] == ["cam", "gradcam"]
    assert body["truth"] in SCENES and body["boxes"] and len(body["predictions"]) == 2
    assert body["results"][0]["overlay"].startswith("data:image/png;base64,")
    heat = Image.open(io.BytesIO(__import__("base64").b64decode(body["results"][1]["heatmap"].split(",", 1)[1])))
    assert heat.size == (64, 64)
    raw = np.array(body["results"][0]["raw"])
    assert raw.shape == (8, 8)
    upload = client.post("/api/cam", files={"image": ("x.png", _png_bytes(100, 80), "image/png")},
                         data={"methods": "saliency", "target": "1"})
    assert upload.status_code == 200 and upload.json()["target"]["class"] == 1


@pytest.mark.parametrize(("files", "data", "status", "code"), [
    ({"image": ("x.txt", b"hello there", "text/plain")}, {}, 422, "not_an_image"),
    ({"image": ("x.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif")}, {}, 422, None),
    ({"image": ("big.png", b"", "image/png")}, {}, 413, "too_many_pixels"),
    ({}, {"methods": "gradcam"}, 422, "bad_input"),
    ({}, {"sample": "1", "methods": "magic"}, 422, "unknown_method"),
    ({}, {"sample": "1", "target": "9"}, 422, "bad_target"),
    ({}, {"sample": "-1"}, 422, "invalid_request"),
])
def test_cam_bad_input(client: TestClient, files: dict, data: dict, status: int, code: str | None) -> None:
    if "image" in files and files["image"][0] == "big.png":
        # a PNG header claiming 20000 x 20000 pixels (a decompression bomb): refused before decoding
        import struct
        import zlib

        def chunk(kind: bytes, payload: bytes) -> bytes:
            return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

        bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)) + \
            chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")
        files = {"image": ("big.png", bomb, "image/png")}
    response = client.post("/api/cam", files=files or None, data=data)
    assert response.status_code == status, response.text
    if code:
        assert response.json()["error"]["code"] == code
    assert client.get("/livez").status_code == 200


def test_cam_upload_too_many_bytes(client: TestClient) -> None:
    response = client.post("/api/cam", files={"image": ("x.png", b"\x89PNG" + b"0" * (21 << 20), "image/png")})
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"


def _wait_job(c: TestClient, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_jobs_featviz_topk_netdissect_dissect(client: TestClient) -> None:
    started = client.post("/api/featviz", json={"layer": "features.block3", "units": [1, 2], "steps": 16})
    assert started.status_code == 202 and started.headers["location"].startswith("/api/jobs/")
    job = _wait_job(client, started.json()["id"])
    assert job["status"] == "done" and job["result"]["final_objective"] > job["result"]["start_objective"]
    image = client.get(f"/api/jobs/{job['id']}/files/featviz.png")
    assert Image.open(io.BytesIO(image.content)).size == (128, 64)
    # same parameters -> the same job (cached)
    assert client.post("/api/featviz", json={"layer": "features.block3", "units": [1, 2], "steps": 16}).json()["id"] == job["id"]
    topk = _wait_job(client, client.post("/api/topk", json={"count": 20, "k": 3, "units": [0, 4]}).json()["id"])
    assert topk["status"] == "done" and [u["unit"] for u in topk["result"]["units"]] == [0, 4]
    nd = _wait_job(client, client.post("/api/netdissect", json={"samples": 20}).json()["id"])
    assert nd["status"] == "done" and "tally.csv" in nd["files"]
    # by default only the edit layer may be built; other layers are refused, not queued
    refused = client.post("/api/dissect", json={"model": "tiny", "layer": "layer2", "samples": 20})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "builds_disabled"
    gd = _wait_job(client, client.post("/api/dissect", json={"model": "tiny", "layer": "layer4", "samples": 20}).json()["id"])
    assert gd["status"] == "done" and 0 <= gd["result"]["interpretable_fraction"] <= 1
    assert gd["result"]["painter_table"] is False  # other settings than the server's: a table of its own
    with client.websocket_connect(f"/ws/jobs/{job['id']}", headers={**ORIGIN}) as ws:
        assert json.loads(ws.receive_text())["status"] == "done"


def test_cancelling_a_job_stops_it_within_a_second(client: TestClient) -> None:
    job = client.post("/api/featviz", json={"layer": "features.block4", "units": [3], "steps": 2048, "seed": 99}).json()
    deadline = time.monotonic() + 10
    while client.get(f"/api/jobs/{job['id']}").json()["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    cancelled_at = time.monotonic()
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 200
    final = _wait_job(client, job["id"], timeout=5)
    assert final["status"] == "cancelled" and time.monotonic() - cancelled_at < 1.0
    assert final["progress"] < 1.0


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    ("/api/featviz", {"units": []}, 422, "invalid_request"),
    ("/api/featviz", {"units": [1], "layer": "no.such"}, 422, "unknown_layer"),
    ("/api/featviz", {"units": [1], "steps": 99999}, 422, "invalid_request"),
    ("/api/dissect", {"model": "tiny", "layer": "layer99"}, 404, "unknown_layer"),
    ("/api/dissect", {"model": "nope", "layer": "layer4"}, 404, "unknown_model"),
])
def test_job_bad_requests(client: TestClient, path: str, body: dict, status: int, code: str) -> None:
    response = client.post(path, json=body)
    assert response.status_code == status and response.json()["error"]["code"] == code
    assert client.get("/api/jobs/0123456789abcdef0123").status_code == 404
    assert client.get("/api/jobs/../../etc").status_code == 404


def test_one_set_of_defaults() -> None:
    """The library, the CLI, the settings, the jobs API and the executor agree on their defaults."""
    import argparse
    import inspect

    from dissect_core.gandissect import DissectConfig
    from server.api.jobs import DissectRequest
    from server.commands.dissect import add_arguments
    from server.runtime import InferenceExecutor

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cli = parser.parse_args(["--layer", "layer4", "--out", "x"])
    settings = Settings()
    assert DissectConfig().threshold == cli.threshold == settings.dissect_threshold == "iqr"
    assert DissectRequest.model_fields["threshold"].default is None  # the API job takes the server's setting
    executor_default = inspect.signature(InferenceExecutor.__init__).parameters["max_batch"].default
    assert executor_default == settings.max_batch == 32


def test_api_doc_lists_the_openapi_operations(client: TestClient) -> None:
    """docs/api.md's REST table and the OpenAPI document name the same operations."""
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    documented = set(re.findall(r"^\| `(GET|POST|DELETE|PUT|PATCH) (/[^`?]*)` \|", doc, flags=re.MULTILINE))
    served = {(method.upper(), path) for path, ops in client.get("/openapi.json").json()["paths"].items() for method in ops}
    assert documented == served, (sorted(documented - served), sorted(served - documented))
    for websocket in ("/ws/paint", "/ws/jobs/{job_id}"):
        assert f"## Websocket `{websocket}`" in doc


def test_classifier_description(client: TestClient) -> None:
    info = client.get("/api/classifier")
    assert info.status_code == 200
    body = info.json()
    assert body["id"] == client.app.state.ganpaint.settings.classifier and len(body["classes"]) >= 2
    assert {layer["name"] for layer in body["layers"]} >= {"features.block3", "features.block4"}
    assert all(layer["units"] > 0 for layer in body["layers"])



def test_a_placed_brush_renders_exactly_its_footprint(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server paints a placed brush's footprint (found on the unedited sample by the real
    segmenter path), not the mask as drawn; ``place: false`` paints the mask as drawn."""
    import dissect_core.placement as placement
    import server.painting as painting

    seen: list[set] = []

    def one_cell(concept: str, painted: np.ndarray, cells: dict) -> np.ndarray:
        seen.append(set(cells))
        out = np.zeros_like(painted)
        out[2, 1] = True
        return out

    monkeypatch.setattr(painting, "PLACED", ("tree",))
    monkeypatch.setattr(placement, "footprint", one_cell)
    cell = np.zeros((16, 16), bool)
    cell[4:6, 2:4] = True  # cell (2, 1) of the 8x8 edit layer
    stroke = {"brush": "tree", "action": "add", "strength": 1.0, "mask": left_half_mask()}
    placed = client.post("/api/render", json=recipe([stroke]))
    by_hand = client.post("/api/render", json=recipe([{**stroke, "mask": MaskSpec.from_array(cell).model_dump(), "place": False}]))
    as_drawn = client.post("/api/render", json=recipe([{**stroke, "place": False}]))
    assert placed.status_code == by_hand.status_code == as_drawn.status_code == 200
    assert placed.content == by_hand.content and placed.content != as_drawn.content
    assert seen and seen[0] == {"sky", "building"}


def test_a_table_built_elsewhere_is_looked_for_at_most_once_a_second(tiny_zoo: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """While another replica builds the painter's table, renders look in the shared cache for it
    (a cache key and a stat) at most every ``REMOTE_LOOKUP_S``, not once per render."""
    from server.catalog import REMOTE_LOOKUP_S

    app = create_app(make_settings(tiny_zoo, tmp_path, causal_samples=0))
    with TestClient(app):
        catalog = app.state.ganpaint.catalog
        model = catalog.get("tiny")
        state = catalog.table_state(model, "layer2")
        state.table, state.status, state.remote = None, "building", True
        looks: list[str] = []
        monkeypatch.setattr(catalog, "lookup_table", lambda model, layer: looks.append(layer))
        for _ in range(50):
            assert catalog.table(model, "layer2") is None
        assert looks == ["layer2"]  # the first render looked; the next 49 within the second did not
        state.looked -= REMOTE_LOOKUP_S  # a second later
        catalog.table(model, "layer2")
        assert looks == ["layer2", "layer2"]
