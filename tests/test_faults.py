"""Faults and hostile input: disconnects, broken files, full disks, path tricks, secrets in logs."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from dissect_core.gandissect import DissectConfig, dissect
from dissect_core.tables import TABLE_VERSION, load_table, save_table
from server.app import create_app
from tests.fake_segmenter import ColourRuleSegmenter
from tests.test_server import ORIGIN, hold_painting, make_settings, recipe


def test_disconnect_mid_render_drops_the_work(tiny_zoo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(make_settings(tiny_zoo, tmp_path, causal_samples=0))
    with TestClient(app) as client:
        state = app.state.ganpaint
        executor = state.executor
        gate = __import__("threading").Event()
        hold_painting(monkeypatch, executor, lambda recipe: gate.wait(5) if recipe.sample == 500 else None)
        with client.websocket_connect("/ws/paint", headers={**ORIGIN}) as ws:
            ws.send_text(json.dumps({"v": 1, "type": "edit", "seq": 1, "recipe": recipe(sample=500)}))  # blocks the worker
            time.sleep(0.3)
            ws.send_text(json.dumps({"v": 1, "type": "edit", "seq": 2, "recipe": recipe(sample=501)}))  # queued behind it
            time.sleep(0.3)
        renders_before = executor.renders
        gate.set()
        time.sleep(1.0)
        monkeypatch.undo()
        metrics = client.get("/metrics").text
        dropped = [line for line in metrics.splitlines() if line.startswith('ganpaint_edits_dropped_total{reason="disconnect"}')]
        assert dropped and float(dropped[0].split()[-1]) >= 1
        # only the blocked request rendered; the queued one of the vanished client was dropped
        assert executor.renders - renders_before <= 1
        assert client.post("/api/render", json=recipe(sample=3)).status_code == 200


def _serve(env: dict, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--log-level", "warning"],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_broken_zoo_file_fails_startup_clearly(tiny_zoo: Path, tmp_path: Path, damage: str) -> None:
    zoo = tmp_path / "zoo"
    shutil.copytree(tiny_zoo, zoo)
    weights = zoo / "tiny" / "generator.safetensors"
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:100])
    from tests.test_server_live import free_port

    result = _serve({"GANPAINT_ZOO_DIR": str(zoo), "GANPAINT_DEFAULT_MODEL": "tiny", "GANPAINT_SEGMENTER": "",
                     "GANPAINT_CACHE_DIR": str(tmp_path / "cache")}, free_port())
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "generator.safetensors" in output
    assert ("missing" in output) if damage == "missing" else ("damaged" in output)


def _small_table(tmp_path: Path):  # noqa: ANN202
    import torch

    from models.proggan import ProgressiveGenerator

    torch.manual_seed(0)
    generator = ProgressiveGenerator([8, 8, 8, 8]).eval()
    return dissect(generator, ["layer4"], ColourRuleSegmenter(), DissectConfig(samples=6, label_size=8))["layer4"]


def test_disk_full_while_writing_the_cache_keeps_the_old_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = _small_table(tmp_path)
    save_table(table, tmp_path / "t", {"model": "old"})
    before = (tmp_path / "t" / "table.json").read_bytes()

    def full_disk(*args, **kwargs) -> None:  # noqa: ANN002, ANN003
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full_disk)  # what save_table writes the arrays with
    with pytest.raises(OSError, match="No space left"):
        save_table(table, tmp_path / "t", {"model": "new"})
    assert (tmp_path / "t" / "table.json").read_bytes() == before
    assert load_table(tmp_path / "t").iou.shape == table.iou.shape
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_server_cache_is_rebuilt_with_a_warning(tiny_zoo: Path, tmp_path: Path, caplog) -> None:  # noqa: ANN001
    settings = make_settings(tiny_zoo, tmp_path, causal_samples=0)
    with TestClient(create_app(settings)) as client:
        client.app.state.ganpaint.catalog.wait(60)
    entries = list((tmp_path / "cache" / "dissect").iterdir())
    assert len(entries) == 1
    (entries[0] / "table.json").write_text("{not json")
    with caplog.at_level(logging.WARNING), TestClient(create_app(settings)) as client:
        client.app.state.ganpaint.catalog.wait(60)
        assert client.get("/api/models/tiny/layers/layer4/brushes").status_code == 200
    assert "damaged" in caplog.text
    assert json.loads((entries[0] / "table.json").read_text())["version"] == TABLE_VERSION


@pytest.mark.parametrize("path", [
    "/api/models/..%2f..%2fetc%2fpasswd", "/api/models/%2e%2e/layers/layer4/dissection", "/api/models/tiny/layers/..%2f..%2fx/dissection",
    "/api/models/tiny/layers/layer4/units/..%2f1", "/api/jobs/..%2f..%2fetc%2fpasswd", "/api/jobs/0123456789abcdef0123/files/..%2fresult.json",
    "/api/models/tiny/samples/..%2f1.png", "/static/..%2f..%2fserver%2fsettings.py", "/static/../../pyproject.toml",
])
def test_path_traversal_is_refused(tiny_zoo: Path, tmp_path: Path, path: str) -> None:
    with TestClient(create_app(make_settings(tiny_zoo, tmp_path, causal_samples=0))) as client:
        response = client.get(path)
        assert response.status_code in (404, 422), (path, response.status_code)
        assert "BaseSettings" not in response.text and "[project]" not in response.text


def test_no_token_in_logs(tiny_zoo: Path, tmp_path: Path, caplog) -> None:  # noqa: ANN001
    secret = "t0ken-s3cret-value"
    with caplog.at_level(logging.DEBUG):
        with TestClient(create_app(make_settings(tiny_zoo, tmp_path, causal_samples=0, token=secret))) as client:
            client.get("/api/models", headers={"authorization": f"Bearer {secret}"})
            client.get("/api/models", headers={"authorization": "Bearer wrong"})
            with client.websocket_connect("/ws/paint", headers={**ORIGIN}, subprotocols=["ganpaint.v1", f"token.{secret}"]) as ws:
                ws.send_text(json.dumps({"v": 1, "type": "edit", "seq": 1, "recipe": recipe()}))
                assert json.loads(ws.receive_text())["type"] == "image"
                ws.receive_bytes()
            assert secret not in client.get("/readyz").text and secret not in client.get("/metrics").text
    assert secret not in caplog.text
    assert "SecretStr('**********')" in repr(make_settings(tiny_zoo, tmp_path, token=secret).token)


def test_renders_while_the_table_builds(tiny_zoo: Path, tmp_path: Path) -> None:
    """The background dissection hooks its own copy of the generator: renders on the shared one
    during the build are neither stopped nor recorded by its hooks (they were: StopForward)."""
    from dissect_core.nethook import count_hooks

    app = create_app(make_settings(tiny_zoo, tmp_path, dissect_samples=400, causal_samples=0))
    with TestClient(app) as client:
        generator = app.state.ganpaint.catalog.get("tiny").generator
        with client.websocket_connect("/ws/paint", headers={**ORIGIN}) as ws:
            for seq in range(1, 30):
                ws.send_text(json.dumps({"v": 1, "type": "edit", "seq": seq, "recipe": recipe(sample=seq)}))
                header = json.loads(ws.receive_text())
                assert header["type"] == "image", header
                ws.receive_bytes()
                assert count_hooks(generator) == 0
        app.state.ganpaint.catalog.wait(120)
        assert client.get("/readyz").json()["models"][0]["tables"]["layer4"]["status"] == "ready"
