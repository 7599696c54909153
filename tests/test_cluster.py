"""The app on two Ray Serve replicas on 127.0.0.1 (``ganpaint serve --cluster``) with a real
redis-server: REST and the painting websocket through Serve's proxy give the same bytes as the plain
app for 16 painters spread over both replicas; jobs run as Ray tasks, a dissection sharded over two
workers gives one process's table, and a job streams through either replica."""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.redis_server import RedisServer

pytest.importorskip("ray.serve")
pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def serve_base(tiny_zoo: Path, tmp_path_factory: pytest.TempPathFactory):
    """Ray on 2 CPUs: two replicas of half a CPU each, and job tasks of half a CPU (two at once)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import serve

    from server.cluster import ClusterConfig, deploy
    from tests.test_server import make_settings
    from tests.test_server_live import free_port

    if shutil.which("redis-server") is None:
        pytest.skip("Debian redis-server is not installed")
    port = free_port()
    redis_server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    settings = make_settings(tiny_zoo, tmp_path_factory.mktemp("cluster"), port=port, redis_url=redis_server.url,
                             job_runner="ray", ray_task_cpus=0.5, invert_refine_steps=20, invert_adapt_steps=20)
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}})
    try:
        deploy(settings, ClusterConfig(replicas=2, painters_per_replica=16, cpus_per_replica=0.5))
        # the first request starts the edit layer's table build (on Ray tasks); every replica paints
        # with it once it is in the shared cache: wait for it, so the tests compare settled bytes
        ready, deadline = 0, time.monotonic() + 180
        while ready < 6:
            answer = httpx.get(f"http://127.0.0.1:{port}/api/models/tiny/layers/layer4/dissection", timeout=60)
            ready = ready + 1 if answer.status_code == 200 else 0
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.2 if ready else 1.0)
        yield f"127.0.0.1:{port}", settings
    finally:
        serve.shutdown()
        ray.shutdown()
        redis_server.stop()


def test_serve_replicas_paint_the_same_bytes_as_the_plain_app(serve_base, tiny_zoo: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from websockets.sync.client import connect

    from server.app import create_app
    from server.replica import REPLICA_HEADER
    from tests.test_server import make_settings

    address, settings = serve_base
    recipe = {"model": "tiny", "sample": 7, "strokes": []}
    with TestClient(create_app(make_settings(tiny_zoo, tmp_path))) as plain:
        plain.get("/api/models/tiny")  # starts the edit table's build, as the cluster's first request did
        assert plain.app.state.ganpaint.jobs.wait_idle(120)
        expected = plain.post("/api/render", json=recipe).content
    assert httpx.get(f"http://{address}/readyz", timeout=30).status_code == 200
    assert httpx.post(f"http://{address}/api/render", json=recipe, timeout=60).content == expected
    with ExitStack() as stack:  # 16 painters at once, spread by Serve over the replicas
        sockets = [stack.enter_context(connect(f"ws://{address}/ws/paint", origin=f"http://{address}",
                                               subprotocols=["ganpaint.v1"], open_timeout=30)) for _ in range(16)]
        replicas = [ws.response.headers[REPLICA_HEADER] for ws in sockets]
        assert len(set(replicas)) == 2 and min(replicas.count(r) for r in set(replicas)) >= 4, replicas
        for seq, ws in enumerate(sockets):
            ws.send(json.dumps({"v": 1, "type": "edit", "seq": seq, "recipe": recipe}))
        for seq, ws in enumerate(sockets):
            header = json.loads(ws.recv(timeout=60))
            assert header["type"] == "image" and header["seq"] == seq, header
            assert ws.recv(timeout=60) == expected


def _sleep_and_name(seconds: float, _shard: None) -> tuple[int, float, float]:
    start = time.time()
    time.sleep(seconds)
    return os.getpid(), start, time.time()


def test_ray_runner_shards_over_two_workers_and_gives_the_one_process_table(serve_base, tiny_zoo: Path) -> None:
    from dissect_core.gandissect import DissectConfig, dissect
    from dissect_core.segmenters import load_segmenter
    from dissect_core.sharded import dissect_sharded
    from models.zoo import load_model
    from server.ray_tasks import RayRunner
    from tests.test_sharded import assert_same_tables

    runner = RayRunner(num_cpus=0.5, workers=2)
    runs = sorted(run for _, run in runner.map(_sleep_and_name, (1.0,), [None] * 4))
    assert len({pid for pid, _, _ in runs}) == 2
    overlapping = sum(1 for a in runs for b in runs if a[0] != b[0] and a[1] < b[2] and b[1] < a[2])
    assert overlapping > 0  # two at a time, not one after another
    generator = load_model("tiny", "cpu", tiny_zoo)
    segmenter = load_segmenter("tiny/segmenter", "cpu", tiny_zoo)
    config = DissectConfig(samples=40, batch_size=4)
    expected = dissect(generator, ["layer4"], segmenter, config)["layer4"]
    assert_same_tables(dissect_sharded(generator, ["layer4"], segmenter, config, runner)["layer4"], expected, "iqr")


def test_a_dissection_job_runs_as_ray_tasks_and_streams_through_either_replica(serve_base, tiny_zoo: Path,
                                                                                tmp_path: Path) -> None:
    """``POST /api/dissect`` through Serve: the replica that took it shards the dissection over Ray
    tasks; /ws/jobs on both replicas streams it to the end; the table equals the plain app's."""
    from fastapi.testclient import TestClient
    from websockets.sync.client import connect

    from dissect_core.tables import load_table
    from server.app import create_app
    from server.replica import REPLICA_HEADER
    from tests.test_server import make_settings
    from tests.test_sharded import assert_same_tables

    address, settings = serve_base
    request = {"model": "tiny", "layer": "layer4", "samples": 24, "threshold": "quantile"}
    job = httpx.post(f"http://{address}/api/dissect", json=request, timeout=60).json()
    with ExitStack() as stack:
        sockets = [stack.enter_context(connect(f"ws://{address}/ws/jobs/{job['id']}", origin=f"http://{address}",
                                               open_timeout=30)) for _ in range(4)]
        assert len({ws.response.headers[REPLICA_HEADER] for ws in sockets}) == 2
        finals = []
        for ws in sockets:
            while (message := json.loads(ws.recv(timeout=120)))["status"] not in ("done", "failed", "cancelled",
                                                                                  "interrupted"):
                pass
            finals.append(message)
    assert all(f["status"] == "done" for f in finals), finals[0]
    assert any("Ray shard tasks" in n for n in finals[0]["notes"]), finals[0]["notes"]
    assert len({json.dumps(f["result"], sort_keys=True) for f in finals}) == 1
    clustered = load_table(settings.cache_dir / "jobs" / job["id"] / "table")
    plain_settings = make_settings(tiny_zoo, tmp_path)
    with TestClient(create_app(plain_settings)) as plain:
        again = plain.post("/api/dissect", json=request).json()
        assert again["id"] == job["id"]  # the same job, computed in one process this time
        assert plain.app.state.ganpaint.jobs.wait_idle(120)
    assert_same_tables(clustered, load_table(plain_settings.cache_dir / "jobs" / job["id"] / "table"), "quantile")


def test_an_upload_is_inverted_as_a_ray_task_and_painted_on_either_replica(serve_base) -> None:
    """The inversion job of an upload runs on a Ray worker (its progress streamed back to the job);
    afterwards every replica paints the inverted upload, with the same bytes."""
    from server.replica import REPLICA_HEADER
    from tests.test_uploads import png_bytes, scene

    address, _ = serve_base
    with httpx.Client(base_url=f"http://{address}", timeout=60) as client:
        response = client.post("/api/uploads", files={"image": ("mine.png", png_bytes(scene()), "image/png")})
        assert response.status_code == 201, response.text
        body = response.json()
        deadline = time.monotonic() + 120
        while (job := client.get(f"/api/jobs/{body['job']['id']}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["status"] == "done", job
        assert any(n.startswith("computed as a Ray task on worker") for n in job["notes"]), job["notes"]
        assert job["result"]["psnr_db"]["adapted"] > job["result"]["psnr_db"]["encoded"]
        recipe = {"model": "tiny", "upload": body["id"], "strokes": []}
        answers = [client.post("/api/render", json=recipe) for _ in range(8)]
    assert {a.status_code for a in answers} == {200}
    assert len({a.headers[REPLICA_HEADER] for a in answers}) == 2  # both replicas answered
    assert len({a.content for a in answers}) == 1


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


def test_scaling_in_drains_a_replica_and_its_painters_move(serve_base) -> None:
    """Redeploy with one replica and a 2 s drain: the removed replica's painters are closed when
    its drain ends, each reconnects to the remaining replica and gets its image back within 2 s;
    afterwards every painter is on that replica."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from server.cluster import ClusterConfig, deploy
    from server.replica import REPLICA_HEADER

    address, settings = serve_base
    recipe = {"model": "tiny", "sample": 3, "strokes": []}

    def open_painter():  # type: ignore[no-untyped-def]
        return connect(f"ws://{address}/ws/paint", origin=f"http://{address}", subprotocols=["ganpaint.v1"],
                       open_timeout=30)

    def paint(ws, seq: int) -> bytes:  # type: ignore[no-untyped-def]
        ws.send(json.dumps({"v": 1, "type": "edit", "seq": seq, "recipe": recipe}))
        assert json.loads(ws.recv(timeout=30))["type"] == "image"
        return ws.recv(timeout=30)

    deadline = time.monotonic() + 90  # the replica killed by the test before is back
    while len({httpx.get(f"http://{address}/readyz", timeout=30).headers[REPLICA_HEADER] for _ in range(6)}) < 2:
        assert time.monotonic() < deadline
        time.sleep(1.0)
    with ExitStack() as stack:
        painters = [stack.enter_context(open_painter()) for _ in range(4)]
        assert len({ws.response.headers[REPLICA_HEADER] for ws in painters}) == 2
        expected = paint(painters[0], 0)
        deploy(settings, ClusterConfig(replicas=1, painters_per_replica=16, cpus_per_replica=0.5, drain_s=2.0))
        deadline = time.monotonic() + 30
        moved = 0
        while time.monotonic() < deadline:
            for i, ws in enumerate(painters):
                try:
                    assert paint(ws, 1) == expected
                except (ConnectionClosed, TimeoutError, OSError):
                    started = time.monotonic()
                    painters[i] = stack.enter_context(open_painter())
                    assert paint(painters[i], 2) == expected
                    assert time.monotonic() - started < 2.0
                    moved += 1
            if len({ws.response.headers[REPLICA_HEADER] for ws in painters}) == 1:
                break
            time.sleep(0.5)
        assert len({ws.response.headers[REPLICA_HEADER] for ws in painters}) == 1 and moved >= 1
