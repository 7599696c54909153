"""Job records in Redis shared by several server processes: found, followed and cancelled across
them, never run twice, interrupted only when their owner died."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

fakeredis = pytest.importorskip("fakeredis")

from server.jobs import JobManager  # noqa: E402
from server.jobstore import JobStore  # noqa: E402
from server.jobstore_redis import RedisJobStore  # noqa: E402
from tests.redis_server import RedisServer, needs_redis_server  # noqa: E402


def _record(job_id: str, status: str = "done", created: float = 1.0) -> dict:
    return {"id": job_id, "kind": "k", "params": {"a": 1}, "status": status, "progress": 0.5, "message": "m",
            "result": {"x": [1, 2]}, "error": None, "notes": ["n"], "created": created, "finished": None}


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_both_stores_keep_the_same_records(backend: str, tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3") if backend == "sqlite" else RedisJobStore(client=fakeredis.FakeRedis())
    for i, status in enumerate(["done", "failed", "running"]):
        store.put(_record(f"job{i}", status, created=float(i)))
    assert store.get("job1") == _record("job1", "failed", 1.0)
    assert [r["id"] for r in store.all(2)] == ["job1", "job2"]  # the most recent, oldest first
    store.delete("job0")
    assert store.get("job0") is None and [r["id"] for r in store.all(10)] == ["job1", "job2"]
    if backend == "sqlite":  # one process: whatever was running died with it
        assert store.mark_interrupted() == 1 and store.get("job2")["status"] == "interrupted"


def _slow_work(started: threading.Event, steps: int = 400):
    def work(job) -> dict:
        started.set()
        for i in range(steps):
            job.report(i / steps, f"step {i}")
            time.sleep(0.01)
        return {"steps": steps}
    return work


def test_two_processes_share_jobs_through_redis(tmp_path: Path) -> None:
    server = fakeredis.FakeServer()
    a = JobManager(tmp_path / "jobs", store=RedisJobStore(client=fakeredis.FakeRedis(server=server), lease_s=0.6))
    b = JobManager(tmp_path / "jobs", store=RedisJobStore(client=fakeredis.FakeRedis(server=server), lease_s=0.6))
    try:
        started = threading.Event()
        job = a.submit("slow", {"n": 1}, _slow_work(started))
        assert started.wait(10)
        seen = b.get(job.id)
        assert seen is not None and seen.remote and seen.status == "running"
        ran_twice = threading.Event()
        again = b.submit("slow", {"n": 1}, lambda j: ran_twice.set() or {})
        assert again.remote and again.id == job.id and not ran_twice.wait(0.3)  # not run a second time
        # B's view follows A's progress through the store's messages
        updates = b.watch(seen, 2.0)
        progress = [r["progress"] for r in (next(updates) for _ in range(3)) if r is not None]
        updates.close()
        assert progress and max(progress) > 0
        # B cancels it; A stops it within a lease period
        b.cancel(job.id)
        deadline = time.monotonic() + 5
        while job.status == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job.status == "cancelled" and b.get(job.id).status == "cancelled"
        # a finished job of A's is found by B (its files are on the shared volume), not recomputed
        done = a.submit("quick", {}, lambda j: {"ok": True})
        assert a.wait_idle(10) and done.status == "done"
        found = b.submit("quick", {}, lambda j: ran_twice.set() or {})
        assert found.status == "done" and found.result == {"ok": True} and not ran_twice.is_set()
    finally:
        a.shutdown(), b.shutdown(), a.close(), b.close()


def test_only_a_dead_owners_jobs_are_interrupted(tmp_path: Path) -> None:
    server = fakeredis.FakeServer()
    a = JobManager(tmp_path / "jobs", store=RedisJobStore(client=fakeredis.FakeRedis(server=server), lease_s=0.5))
    started = threading.Event()
    job = a.submit("slow", {"n": 2}, _slow_work(started, steps=1000))
    assert started.wait(10)
    time.sleep(0.8)  # past one lease: A renews it
    c = JobManager(tmp_path / "jobs", store=RedisJobStore(client=fakeredis.FakeRedis(server=server), lease_s=0.5))
    assert c.get(job.id).status == "running"  # a living owner's job is left alone
    a.close()  # A stops renewing (its process "dies"); its job thread is still running, so pretend
    a._jobs[job.id].persist = None  # it can no longer write either
    deadline = time.monotonic() + 5  # C, alive all along, sweeps: no process needs to start
    while c.store.get(job.id)["status"] != "interrupted":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    d = JobManager(tmp_path / "jobs", store=RedisJobStore(client=fakeredis.FakeRedis(server=server), lease_s=0.5))
    assert d.get(job.id).status == "interrupted"
    a.shutdown(), c.close(), d.close()


@needs_redis_server
def test_a_real_redis_server_and_a_restart_of_it(tmp_path: Path) -> None:
    """Against Debian's redis-server: records survive a restart of Redis (append-only file)."""
    with RedisServer(tmp_path) as server:
        manager = JobManager(tmp_path / "jobs", store=RedisJobStore(server.url))
        job = manager.submit("quick", {"x": 1}, lambda j: {"answer": 42})
        assert manager.wait_idle(10) and job.status == "done"
        manager.close()
        server.stop()
        server.start()  # Redis restarted mid-life: the finished record is still there
        again = JobManager(tmp_path / "jobs", store=RedisJobStore(server.url))
        assert again.get(job.id).status == "done" and again.get(job.id).result == {"answer": 42}
        again.close()


@needs_redis_server
def test_redis_restarted_mid_job_loses_no_finished_record(tmp_path: Path) -> None:
    """Redis goes away while a job runs and the job finishes while it is away: once Redis is back
    the finished record is written (the manager retries what the store missed), the record that
    was finished before the restart is still there, and a watcher on another process sees the end."""
    server = RedisServer(tmp_path).start()
    url = server.url
    try:
        manager = JobManager(tmp_path / "jobs", store=RedisJobStore(url, lease_s=1.5))
        first = manager.submit("quick", {"x": 1}, lambda j: {"answer": 42})
        assert manager.wait_idle(10) and first.status == "done"
        release = threading.Event()
        running = threading.Event()

        def slow(job) -> dict:
            running.set()
            release.wait(30)
            return {"answer": 43}

        second = manager.submit("slow", {"x": 2}, slow)
        assert running.wait(10)
        watcher = RedisJobStore(url)
        assert watcher.get(second.id)["status"] == "running"
        updates = watcher.watch(second.id, timeout=0.2)
        server.stop()
        release.set()  # the job finishes while Redis is down
        assert manager.wait_idle(10) and second.status == "done"
        assert next(updates) is None  # the watcher notices Redis is away
        server.start()
        seen = []
        deadline = time.monotonic() + 10
        for record in updates:
            if record is not None:
                seen.append(record["status"])
                if record["status"] == "done":
                    break
            assert time.monotonic() < deadline, seen
        store = RedisJobStore(url)
        assert store.get(first.id)["result"] == {"answer": 42}
        assert store.get(second.id)["status"] == "done" and store.get(second.id)["result"] == {"answer": 43}
        manager.close()
    finally:
        server.stop()


@needs_redis_server
def test_a_job_started_on_one_server_streams_through_another(tiny_zoo: Path, tmp_path: Path) -> None:
    """Two apps (replicas) with one Redis and one cache volume: a feature visualisation started on A
    is found, streamed on /ws/jobs and fetched through B."""
    import json

    from fastapi.testclient import TestClient

    from server.app import create_app
    from tests.test_server import ORIGIN, make_settings

    with RedisServer() as server:
        settings = make_settings(tiny_zoo, tmp_path, redis_url=server.url)
        with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
            job = a.post("/api/featviz", json={"units": [0, 1], "steps": 60, "layer": "features.block2"}).json()
            assert b.get(f"/api/jobs/{job['id']}").json()["kind"] == "featviz"
            statuses = []
            with b.websocket_connect(f"/ws/jobs/{job['id']}", headers=dict(ORIGIN)) as ws:
                while True:
                    message = json.loads(ws.receive_text())
                    statuses.append(message["status"])
                    if message["status"] in ("done", "failed", "cancelled", "interrupted"):
                        break
            assert statuses[-1] == "done", statuses
            again = b.post("/api/featviz", json={"units": [0, 1], "steps": 60, "layer": "features.block2"}).json()
            assert again["id"] == job["id"] and again["status"] == "done"  # B does not compute it again
            image = b.get(f"/api/jobs/{job['id']}/files/featviz.png")
            assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
