"""Paint your own picture: uploads stored safely, inverted as a job, painted like samples, composited."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from server.app import create_app
from server.schemas import MaskSpec
from tests.test_server import ORIGIN, make_settings


def png_bytes(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def scene(size: int = 40, seed: int = 0) -> np.ndarray:
    """A picture the tiny GAN never made: a world render, larger than the model and not square."""
    from models.world import render_scene, world_seed

    image = render_scene(world_seed("heldout", 7000 + seed), size, world="framed").image
    return np.concatenate([image, image[:, :8]], axis=1)  # 40 x 48: the server crops it square


@pytest.fixture(scope="module")
def upload_app(tiny_zoo: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("uploads")
    app = create_app(make_settings(tiny_zoo, root, invert_refine_steps=5, invert_adapt_steps=5))
    with TestClient(app) as client:
        app.state.ganpaint.jobs.wait_idle(60)
        yield app, client


def upload(client: TestClient, data: bytes, name: str = "mine.png", kind: str = "image/png", **form: str):
    return client.post("/api/uploads", files={"image": (name, data, kind)}, data=form)


def wait_job(app, job_id: str) -> dict:
    job = app.state.ganpaint.jobs.get(job_id)
    deadline = time.monotonic() + 60
    while job.status not in ("done", "failed", "cancelled", "interrupted") and time.monotonic() < deadline:
        job.wait_changed(job.version, 1.0)
    return job.describe()


def render(client: TestClient, recipe: dict) -> np.ndarray:
    response = client.post("/api/render", json=recipe)
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


def test_upload_encode_invert_paint_and_composite(upload_app) -> None:
    app, client = upload_app
    state = app.state.ganpaint
    response = upload(client, png_bytes(scene()))
    assert response.status_code == 201, response.text
    body = response.json()
    upload_id = body["id"]
    assert len(upload_id) == 32 and body["model"] == "tiny" and (body["width"], body["height"]) == (16, 16)
    assert body["stage"] == "encoded" and body["psnr_db"]["encoded"] > 0
    assert "owners" not in body and "ganpaint_owner" in response.cookies
    stored = np.asarray(Image.open(io.BytesIO(client.get(body["files"]["picture.png"]).content)).convert("RGB"))
    assert stored.shape == (16, 16, 3)

    job = wait_job(app, body["job"]["id"])
    assert job["status"] == "done", job
    assert set(job["result"]["psnr_db"]) == {"encoded", "refined", "adapted"}
    status = client.get(f"/api/uploads/{upload_id}").json()
    assert status["stage"] == "inverted" and "adapted.png" in status["files"]

    # unedited: the picture itself, byte for byte
    plain = render(client, {"model": "tiny", "upload": upload_id})
    assert np.array_equal(plain, stored)

    # a stroke on the top-left quarter: the far corner stays the upload's own pixels; the stroke's band changes
    mask = np.zeros((16, 16), bool)
    mask[:4, :4] = True
    stroke = {"units": list(range(8)), "action": "add", "strength": 1.0, "mask": MaskSpec.from_array(mask).model_dump()}
    recipe = {"model": "tiny", "upload": upload_id, "strokes": [stroke]}
    painted = render(client, recipe)
    again = client.post("/api/render", json=recipe).content
    assert again == client.post("/api/render", json=recipe).content  # the same recipe, the same bytes
    assert np.array_equal(painted[12:, 12:], stored[12:, 12:])
    assert not np.array_equal(painted[:4, :4], stored[:4, :4])

    from models.inversion import edit_band

    source = state.uploads.source(upload_id)
    features = source.r
    changed = np.zeros((8, 8), bool)
    changed[:2, :2] = True
    band = edit_band(changed, 16)
    assert np.array_equal(painted[band == 0], stored[band == 0])  # outside the band: the upload exactly
    assert features.shape[1:] == (8, 8)

    # the websocket painter paints it too, and gives the same image as REST
    with client.websocket_connect("/ws/paint", headers=dict(ORIGIN)) as ws:
        ws.send_text(json.dumps({"v": 1, "type": "edit", "seq": 1, "recipe": recipe}))
        header = json.loads(ws.receive_text())
        assert header["type"] == "image", header
        data = ws.receive_bytes()
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), painted)


def test_uploads_are_listed_to_their_owner_only_and_deleted(upload_app, tiny_zoo: Path) -> None:
    app, client = upload_app
    response = upload(client, png_bytes(scene(seed=1)))
    upload_id = response.json()["id"]
    wait_job(app, response.json()["job"]["id"])
    assert upload_id in [u["id"] for u in client.get("/api/uploads").json()["uploads"]]
    other = TestClient(app)
    assert upload_id not in [u["id"] for u in other.get("/api/uploads").json()["uploads"]]
    assert other.delete(f"/api/uploads/{upload_id}").status_code == 404  # not theirs
    assert other.post("/api/render", json={"model": "tiny", "upload": upload_id}).status_code == 200  # shared by id
    assert client.delete(f"/api/uploads/{upload_id}").json() == {"id": upload_id, "removed": True}
    assert not (app.state.ganpaint.uploads.root / upload_id).exists()
    gone = client.post("/api/render", json={"model": "tiny", "upload": upload_id})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "unknown_upload"
    assert client.get(f"/api/uploads/{upload_id}").status_code == 404


def _bomb() -> bytes:
    """A PNG whose header claims 20000 x 20000 pixels (a few hundred bytes on disk)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("data, name, kind, status, code", [
    (b"not an image at all", "x.png", "image/png", 422, "not_an_image"),
    (_bomb(), "bomb.png", "image/png", 413, "too_many_pixels"),
    (png_bytes(np.zeros((8, 8, 3), np.uint8), "GIF"), "x.gif", "image/gif", 422, "unsupported_format"),
    (png_bytes(np.zeros((8, 8, 3), np.uint8))[:40], "cut.png", "image/png", 422, "not_an_image"),
])
def test_bad_uploads_get_clear_errors_and_leave_nothing(upload_app, data: bytes, name: str, kind: str, status: int,
                                                        code: str) -> None:
    app, client = upload_app
    root = app.state.ganpaint.uploads.root
    before = sorted(p.name for p in root.iterdir()) if root.exists() else []
    response = upload(client, data, name, kind)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    after = sorted(p.name for p in root.iterdir()) if root.exists() else []
    assert after == before


def test_upload_bounds_model_and_recipe_errors(tiny_zoo: Path, tmp_path: Path) -> None:
    app = create_app(make_settings(tiny_zoo, tmp_path, max_upload_bytes=2048, invert_refine_steps=1,
                                   invert_adapt_steps=1))
    with TestClient(app) as client:
        big = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        response = upload(client, png_bytes(big))
        assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
        response = upload(client, png_bytes(np.zeros((8, 8, 3), np.uint8)), model="nosuchmodel")
        assert response.status_code == 404
        bad = client.post("/api/render", json={"model": "tiny", "upload": "0" * 32, "sample": 1})
        assert bad.status_code == 422  # exactly one source
        unknown = client.post("/api/render", json={"model": "tiny", "upload": "0" * 32})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_upload"
        malformed = client.post("/api/render", json={"model": "tiny", "upload": "../../etc/passwd"})
        assert malformed.status_code == 422
        app.state.ganpaint.jobs.wait_idle(60)


def test_uploads_need_the_token_in_token_mode(tiny_zoo: Path, tmp_path: Path) -> None:
    app = create_app(make_settings(tiny_zoo, tmp_path, token="s3cret-token", invert_refine_steps=1,
                                   invert_adapt_steps=1))
    with TestClient(app) as client:
        data = png_bytes(scene(seed=2))
        assert upload(client, data).status_code == 401
        assert client.get("/api/uploads").status_code == 401
        response = client.post("/api/uploads", files={"image": ("a.png", data, "image/png")},
                               headers={"Authorization": "Bearer s3cret-token"})
        assert response.status_code == 201
        app.state.ganpaint.jobs.wait_idle(60)


def test_a_model_without_an_encoder_refuses_uploads(tiny_zoo: Path, tmp_path: Path) -> None:
    import shutil

    models_dir = tmp_path / "models"
    models_dir.mkdir()
    shutil.copy(tiny_zoo / "tiny" / "generator.safetensors", models_dir / "mine.safetensors")
    app = create_app(make_settings(tiny_zoo, tmp_path, models_dir=models_dir, table_builds="none"))
    with TestClient(app) as client:
        response = upload(client, png_bytes(scene()), model="mine")
        assert response.status_code == 422 and response.json()["error"]["code"] == "no_encoder"
        root = app.state.ganpaint.uploads.root
        assert not root.exists() or not any(root.iterdir())


def test_an_inversion_can_be_cancelled_and_the_upload_survives_a_restart(tiny_zoo: Path, tmp_path: Path) -> None:
    settings = make_settings(tiny_zoo, tmp_path, invert_refine_steps=10_000, invert_adapt_steps=10_000)
    app = create_app(settings)
    with TestClient(app) as client:
        body = upload(client, png_bytes(scene(seed=3))).json()
        job_id = body["job"]["id"]
        job = app.state.ganpaint.jobs.get(job_id)
        deadline = time.monotonic() + 30
        while job.progress == 0 and time.monotonic() < deadline:  # running, past its first steps
            job.wait_changed(job.version, 0.5)
        assert client.delete(f"/api/jobs/{job_id}").status_code == 200
        assert wait_job(app, job_id)["status"] == "cancelled"
        status = client.get(f"/api/uploads/{body['id']}").json()
        assert status["stage"] == "encoded"  # nothing half-made: the encoder's version paints on
        first = client.post("/api/render", json={"model": "tiny", "upload": body["id"]}).content
        cookies = dict(client.cookies)
    restarted = create_app(settings)
    with TestClient(restarted, cookies=cookies) as client:
        assert body["id"] in [u["id"] for u in client.get("/api/uploads").json()["uploads"]]
        assert client.post("/api/render", json={"model": "tiny", "upload": body["id"]}).content == first
        again = client.post(f"/api/uploads/{body['id']}/invert")
        assert again.status_code == 202 and again.json()["job"]["id"] == job_id  # the same work runs again
        assert again.json()["job"]["status"] in ("queued", "running")
        assert client.post(f"/api/uploads/{'f' * 32}/invert").status_code == 404
        restarted.state.ganpaint.jobs.cancel_all()
        restarted.state.ganpaint.jobs.wait_idle(60)


def test_upload_store_expires_and_bounds_its_items(tmp_path: Path) -> None:
    from server.uploads import UploadStore

    now = [1000.0]
    store = UploadStore(tmp_path / "u", max_items=2, ttl_s=100, clock=lambda: now[0])
    pics = [np.full((4, 4, 3), v, np.uint8) for v in (1, 2, 3)]
    a, new = store.add("m", pics[0], "alice")
    assert new and store.add("m", pics[0], "bob") == (store.get(a["id"]), False)  # same picture, same id
    assert store.get(a["id"])["owners"] == ["alice", "bob"]
    now[0] += 10
    b, _ = store.add("m", pics[1], "alice")
    now[0] += 10
    c, _ = store.add("m", pics[2], "alice")  # a third: the least recently used goes
    assert store.get(a["id"]) is None and store.get(b["id"]) is not None and store.get(c["id"]) is not None
    assert [u["id"] for u in store.list("alice")] == [c["id"], b["id"]]
    assert store.list("bob") == []
    assert store.remove(b["id"], "mallory") is False and store.get(b["id"]) is not None
    now[0] += 150  # past the ttl
    assert store.get(b["id"]) is None and not (tmp_path / "u" / b["id"]).exists()
    assert store.add("other-model", pics[2], "alice")[0]["id"] != c["id"]  # an upload belongs to one model


def test_painting_an_upload_keeps_it_alive(tmp_path: Path) -> None:
    import torch

    from server.uploads import ENCODED, UploadStore

    now = [1000.0]
    store = UploadStore(tmp_path / "u", ttl_s=100, clock=lambda: now[0])
    meta, _ = store.add("m", np.full((4, 4, 3), 7, np.uint8), "alice")
    store.save_tensors(meta["id"], ENCODED, {"r": torch.ones(1, 2, 2, 2)})
    for _ in range(3):  # painted every 90 s: never 100 s unused
        now[0] += 90
        source = store.source(meta["id"])
        assert source is not None and source.stage == "encoded" and float(source.r.sum()) == 8
    assert store.get(meta["id"])["used"] == now[0]
    now[0] += 101  # then left alone: gone, also from the painter's cache
    assert store.source(meta["id"]) is None and store.get(meta["id"]) is None
