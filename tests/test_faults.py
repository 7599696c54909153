"""Faults and hostile input: disconnects, broken files, full disks, path tricks, secrets in logs."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
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


def _small_table(tmp_path: Path):
    import torch

    from models.proggan import ProgressiveGenerator

    torch.manual_seed(0)
    generator = ProgressiveGenerator([8, 8, 8, 8]).eval()
    return dissect(generator, ["layer4"], ColourRuleSegmenter(), DissectConfig(samples=6, label_size=8))["layer4"]


def test_disk_full_while_writing_the_cache_keeps_the_old_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = _small_table(tmp_path)
    save_table(table, tmp_path / "t", {"model": "old"})
    before = (tmp_path / "t" / "table.json").read_bytes()

    def full_disk(*args, **kwargs) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full_disk)  # what save_table writes the arrays with
    with pytest.raises(OSError, match="No space left"):
        save_table(table, tmp_path / "t", {"model": "new"})
    assert (tmp_path / "t" / "table.json").read_bytes() == before
    assert load_table(tmp_path / "t").iou.shape == table.iou.shape
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_server_cache_is_rebuilt_with_a_warning(tiny_zoo: Path, tmp_path: Path, caplog) -> None:
    settings = make_settings(tiny_zoo, tmp_path, causal_samples=0)
    with TestClient(create_app(settings)) as client:
        client.app.state.ganpaint.jobs.wait_idle(60)
    entries = list((tmp_path / "cache" / "dissect").iterdir())
    assert len(entries) == 1
    (entries[0] / "table.json").write_text("{not json")
    with caplog.at_level(logging.WARNING), TestClient(create_app(settings)) as client:
        client.app.state.ganpaint.jobs.wait_idle(60)
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


def test_no_token_in_logs(tiny_zoo: Path, tmp_path: Path, caplog) -> None:
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
        app.state.ganpaint.jobs.wait_idle(120)
        assert client.get("/readyz").json()["models"][0]["tables"]["layer4"]["status"] == "ready"


def _start(env: dict, port: int, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")
    return subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--device", "cpu",
                             "--log-level", "warning"], env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_mid_build_and_mid_job_loses_nothing(tiny_zoo: Path, tmp_path: Path) -> None:
    """kill -9 while the edit layer's table builds and a feature visualisation runs, then start again:
    the finished job is found with its files and not recomputed, the one in flight says interrupted and
    runs again when asked, and the table build continues from its checkpoint instead of from zero."""
    from tests.test_server_live import free_port

    port = free_port()
    cache = tmp_path / "cache"
    env = {**os.environ, "GANPAINT_ZOO_DIR": str(tiny_zoo), "GANPAINT_DEFAULT_MODEL": "tiny",
           "GANPAINT_SEGMENTER": "tiny/segmenter", "GANPAINT_CLASSIFIER": "tiny/classifier",
           "GANPAINT_CACHE_DIR": str(cache), "GANPAINT_DISSECT_SAMPLES": "8000", "GANPAINT_CAUSAL_SAMPLES": "4",
           "GANPAINT_CHECKPOINT_EVERY_S": "0.2", "GANPAINT_JOB_WORKERS": "2", "OMP_NUM_THREADS": "1"}
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    proc = _start(env, port, log_path)
    try:
        _wait_until(lambda: httpx.get(f"{base}/livez", timeout=2).status_code == 200, 60, "the server")
        # the table build started with the server; wait for its first checkpoint
        partial = _wait_until(lambda: next(iter((cache / "dissect").glob("*.partial/dissect.pt")), None), 120,
                              "a table checkpoint")
        done = httpx.post(f"{base}/api/featviz", json={"layer": "features.block3", "units": [1], "steps": 8}).json()
        finished = _wait_until(lambda: (j := httpx.get(f"{base}/api/jobs/{done['id']}").json())["status"] == "done" and j,
                               60, "the short job")
        long = httpx.post(f"{base}/api/featviz", json={"layer": "features.block4", "units": [2], "steps": 2048}).json()
        _wait_until(lambda: httpx.get(f"{base}/api/jobs/{long['id']}").json()["status"] == "running", 60, "the long job")
        assert list((cache / "dissect").glob("*.partial")), "the build finished before the kill: make it longer"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        saved = torch.load(partial, weights_only=True)["state"]
        assert saved["done"] > 0  # some of the build was done and kept

        proc = _start(env, port, log_path)
        _wait_until(lambda: httpx.get(f"{base}/livez", timeout=2).status_code == 200, 60, "the restarted server")
        again = httpx.get(f"{base}/api/jobs/{done['id']}").json()
        assert again["status"] == "done" and again["finished"] == finished["finished"]
        assert httpx.get(f"{base}/api/jobs/{done['id']}/files/featviz.png").content[:8] == b"\x89PNG\r\n\x1a\n"
        resubmitted = httpx.post(f"{base}/api/featviz", json={"layer": "features.block3", "units": [1], "steps": 8}).json()
        assert resubmitted["id"] == done["id"] and resubmitted["status"] == "done"
        assert resubmitted["finished"] == finished["finished"]  # not computed again
        assert httpx.get(f"{base}/api/jobs/{long['id']}").json()["status"] == "interrupted"
        # the build was started again with the server and continues from the checkpoint
        ready = _wait_until(lambda: (r := httpx.get(f"{base}/readyz").json()).get("models") and
                            r["models"][0]["tables"].get("layer4", {}).get("status") == "ready" and r, 300, "the table")
        build = httpx.get(f"{base}/api/jobs/{ready['models'][0]['tables']['layer4']['job']}").json()
        assert build["status"] == "done"
        assert "restarted after an interruption" in build["notes"]
        assert any(note.startswith("continued from the checkpoint") for note in build["notes"])
        assert not list((cache / "dissect").glob("*.partial"))  # the checkpoint is gone once the table is made
        brushes = httpx.get(f"{base}/api/models/tiny/layers/layer4/brushes")
        assert brushes.status_code == 200
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_the_ray_job_runner_without_ray_fails_startup_clearly(tiny_zoo: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """GANPAINT_JOB_RUNNER=ray on an install without the cluster extra: one line saying what to
    install, before anything starts (not a failure at the first job)."""
    import argparse
    import importlib.util

    from server.commands import CommandError, serve

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    for key, value in {"GANPAINT_ZOO_DIR": str(tiny_zoo), "GANPAINT_DEFAULT_MODEL": "tiny", "GANPAINT_SEGMENTER": "",
                       "GANPAINT_CACHE_DIR": str(tmp_path / "cache"), "GANPAINT_JOB_RUNNER": "ray"}.items():
        monkeypatch.setenv(key, value)
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server started"))
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    with pytest.raises(CommandError, match=r"pip install 'ganpaint\[cluster\]'"):
        serve.run(parser.parse_args([]))
