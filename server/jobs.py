"""Long-running work (feature visualisation, dissections, top-k) as jobs with progress and cancel.

Jobs run on a small pool of worker threads of their own (``max_running``, default 1), never on the
painting executor, so a dissection cannot stall painting's queue. A job's id is a hash of its kind
and parameters: submitting the same work again returns the existing job (cached by parameters)
unless it failed or was cancelled. Progress is a fraction plus a message; cancellation sets a flag
the work checks between steps (featviz every step, dissections every batch), so it stops within a
step. Results are files under ``results_dir/<id>/`` plus a JSON summary.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Job", "JobManager", "JobCancelled", "QueueFull"]

log = logging.getLogger(__name__)
TERMINAL = ("done", "failed", "cancelled")


class JobCancelled(Exception):
    pass


class QueueFull(Exception):
    pass


@dataclass
class Job:
    id: str
    kind: str
    params: dict[str, Any]
    directory: Path
    status: str = "queued"
    progress: float = 0.0
    message: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    changed: threading.Condition = field(default_factory=threading.Condition, repr=False)
    version: int = 0
    """Incremented on every change (progress, status); ``wait_changed`` waits for a newer one."""

    def _touch(self) -> None:
        """Record a change and wake the waiters (call with ``changed`` held)."""
        self.version += 1
        self.changed.notify_all()

    def wait_changed(self, seen: int, timeout: float) -> int:
        """Block until the job changed after version ``seen`` (or ``timeout`` s); returns the version now."""
        with self.changed:
            self.changed.wait_for(lambda: self.version != seen, timeout)
            return self.version

    def report(self, fraction: float, message: str = "") -> None:
        """Called by the work: record progress, and stop here if the job was cancelled."""
        if self.cancel_event.is_set():
            raise JobCancelled()
        with self.changed:
            self.progress = max(0.0, min(1.0, fraction))
            self.message = message
            self._touch()

    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "params": self.params, "status": self.status,
                "progress": round(self.progress, 4), "message": self.message, "result": self.result,
                "error": self.error, "created": self.created, "finished": self.finished,
                "files": sorted(p.name for p in self.directory.glob("*") if p.is_file()) if self.directory.exists() else []}


class JobManager:
    def __init__(self, results_dir: Path, max_running: int = 1, max_jobs: int = 64) -> None:
        self.results_dir = results_dir
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self.max_running = max_running
        self._pool: ThreadPoolExecutor | None = None

    @staticmethod
    def job_id(kind: str, params: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps({"kind": kind, "params": params}, sort_keys=True).encode()).hexdigest()[:20]

    def submit(self, kind: str, params: dict[str, Any], work: Callable[[Job], dict[str, Any]]) -> Job:
        job_id = self.job_id(kind, params)
        with self._lock:
            existing = self._jobs.get(job_id)
            if existing is not None and existing.status not in ("failed", "cancelled"):
                return existing
            active = sum(j.status not in TERMINAL for j in self._jobs.values())
            if active >= self.max_jobs:
                raise QueueFull(f"{active} jobs are queued or running; try again later")
            job = Job(job_id, kind, params, self.results_dir / job_id)
            self._jobs[job_id] = job
            while len(self._jobs) > 4 * self.max_jobs:  # forget the oldest finished jobs
                oldest = next((k for k, j in self._jobs.items() if j.status in TERMINAL), None)
                if oldest is None:
                    break
                self._jobs.pop(oldest)
        with self._lock:
            if self._pool is None:  # created on first use, and again after a shutdown (app restarted)
                self._pool = ThreadPoolExecutor(max_workers=self.max_running, thread_name_prefix="job")
            self._pool.submit(self._run, job, work)
        return job

    def _run(self, job: Job, work: Callable[[Job], dict[str, Any]]) -> None:
        if job.cancel_event.is_set():
            self._finish(job, "cancelled")
            return
        with job.changed:
            job.status = "running"
            job._touch()
        try:
            job.directory.mkdir(parents=True, exist_ok=True)
            result = work(job)
        except (JobCancelled, InterruptedError):
            self._finish(job, "cancelled")
            return
        except Exception as exc:  # reported on the job; the server goes on
            log.exception("job %s (%s) failed", job.id, job.kind)
            self._finish(job, "failed", error=f"{type(exc).__name__}: {exc}")
            return
        job.result = result
        (job.directory / "result.json").write_text(json.dumps(result, indent=1))
        self._finish(job, "done")

    def _finish(self, job: Job, status: str, error: str | None = None) -> None:
        with job.changed:
            job.status, job.error, job.finished = status, error, time.time()
            if status == "done":
                job.progress = 1.0
            job._touch()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        job = self.get(job_id)
        if job is not None and job.status not in TERMINAL:
            job.cancel_event.set()
            if job.status == "queued":
                self._finish(job, "cancelled")
        return job

    def cancel_all(self) -> None:
        with self._lock:
            ids = list(self._jobs)
        for job_id in ids:
            self.cancel(job_id)

    def shutdown(self) -> None:
        """Cancel every job and wait for the running ones to reach their next cancellation check."""
        self.cancel_all()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
