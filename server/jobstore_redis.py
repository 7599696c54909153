"""Job records in Redis, for several server processes (replicas) sharing one store.

The same interface as the embedded SQLite store (``server.jobstore.JobStore``): ``put``, ``get``,
``all``, ``delete``, ``mark_interrupted``, ``close``. Each record is a hash ``<ns>:job:<id>`` of JSON
fields, indexed by creation time in the sorted set ``<ns>:jobs``; every ``put`` also publishes the
record on ``<ns>:events:<id>``, so a replica that does not run a job can stream its progress
(``watch``).

"Interrupted" needs more care than in one process: a replica starting up must not mark the jobs
that other, living replicas run. A queued or running record therefore carries a *lease*, the key
``<ns>:lease:<id>`` naming its owner with a time to live (``lease_s``), renewed by every ``put`` of
the job (progress is written at least every second while it runs, and the manager also renews the
leases of its live jobs, ``renew``); ``mark_interrupted`` marks only records whose lease has expired:
their process died. Every manager sweeps so once a lease period, so a replica's death shows as
``interrupted`` within about two lease periods without waiting for a process to start. Finished
records have no lease and live until deleted.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

__all__ = ["RedisJobStore"]

_FIELDS = ("id", "kind", "params", "status", "progress", "message", "result", "error", "notes", "created", "finished")
LIVE = ("queued", "running")


class RedisJobStore:
    def __init__(self, url: str = "redis://127.0.0.1:6379/0", namespace: str = "ganpaint", lease_s: float = 60.0,
                 client: Any = None) -> None:
        """``client``: an existing redis client (tests pass a fakeredis one); else one for ``url``."""
        if client is None:
            import redis

            client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)
        self.redis = client
        self.namespace = namespace
        self.lease_ms = int(lease_s * 1000)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        """This process: the leases it takes name it."""

    def _key(self, kind: str, job_id: str = "") -> str:
        return f"{self.namespace}:{kind}:{job_id}" if job_id else f"{self.namespace}:{kind}"

    def put(self, record: dict[str, Any]) -> None:
        job_id = record["id"]
        fields = {f: json.dumps(record[f]) for f in _FIELDS}
        pipe = self.redis.pipeline()
        pipe.hset(self._key("job", job_id), mapping=fields)
        pipe.zadd(self._key("jobs"), {job_id: float(record["created"])})
        if record["status"] in LIVE:
            pipe.set(self._key("lease", job_id), self.owner, px=self.lease_ms)
            pipe.sadd(self._key("live"), job_id)
        else:
            pipe.delete(self._key("lease", job_id), self._key("cancel", job_id))
            pipe.srem(self._key("live"), job_id)
        pipe.publish(self._key("events", job_id), json.dumps(record))
        pipe.execute()

    def renew(self, job_ids: list[str]) -> None:
        """Extend the leases of this process's live jobs (called periodically by the manager)."""
        if not job_ids:
            return
        pipe = self.redis.pipeline()
        for job_id in job_ids:
            pipe.set(self._key("lease", job_id), self.owner, px=self.lease_ms)
        pipe.execute()

    def request_cancel(self, job_id: str) -> None:
        """Ask the job's owner to cancel it (it looks when it renews its leases)."""
        self.redis.set(self._key("cancel", job_id), "1", px=self.lease_ms * 2)

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.redis.exists(self._key("cancel", job_id)))

    def get(self, job_id: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(self._key("job", job_id))
        return self._record(raw) if raw else None

    def all(self, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` most recent records, oldest first."""
        ids = self.redis.zrevrange(self._key("jobs"), 0, max(limit - 1, 0))
        pipe = self.redis.pipeline()
        for job_id in ids:
            pipe.hgetall(self._key("job", job_id.decode() if isinstance(job_id, bytes) else job_id))
        records = [self._record(raw) for raw in pipe.execute() if raw]
        return list(reversed(records))

    def delete(self, job_id: str) -> None:
        pipe = self.redis.pipeline()
        pipe.delete(self._key("job", job_id), self._key("lease", job_id))
        pipe.zrem(self._key("jobs"), job_id)
        pipe.srem(self._key("live"), job_id)
        pipe.execute()

    def mark_interrupted(self) -> int:
        """Queued or running records whose owner's lease has expired (their process died) become
        ``interrupted``; the jobs of living processes are left alone. Returns how many. Only the
        live records are looked at (the set ``<ns>:live``), so every process can sweep often."""
        count = 0
        for raw_id in self.redis.smembers(self._key("live")):
            job_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
            record = self.get(job_id)
            if record is None:
                self.redis.srem(self._key("live"), job_id)
            elif record["status"] in LIVE and not self.redis.exists(self._key("lease", job_id)):
                record["status"] = "interrupted"
                self.put(record)
                count += 1
        return count

    def watch(self, job_id: str, timeout: float) -> Iterator[dict[str, Any] | None]:
        """The job's records as they are published (None after ``timeout`` s without one); the caller
        stops iterating when it has seen a terminal status. If Redis goes away (a restart), it
        subscribes again when Redis is back and yields the record as it then stands, so a change
        published in between is not missed."""
        from redis.exceptions import ConnectionError as RedisDown
        from redis.exceptions import TimeoutError as RedisSlow

        resubscribed = False
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self._key("events", job_id))
                if resubscribed:
                    current = self.get(job_id)
                    if current is not None:
                        yield current
                while True:
                    message = pubsub.get_message(timeout=timeout)
                    if message is None:
                        yield None
                        continue
                    if message.get("type") == "message":
                        yield json.loads(message["data"])
            except (RedisDown, RedisSlow):
                resubscribed = True
                yield None
                time.sleep(min(timeout, 0.5))
            finally:
                pubsub.close()

    @staticmethod
    def _record(raw: dict[Any, Any]) -> dict[str, Any]:
        decoded = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
        return {f: json.loads(decoded[f]) for f in _FIELDS if f in decoded}

    def close(self) -> None:
        self.redis.close()
