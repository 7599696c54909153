"""Long-running work (feature visualisation, dissections, top-k) as jobs with progress and cancel.

Jobs run on a small pool of worker threads of their own (``max_running``, default 1), never on the
painting executor, so a dissection cannot stall painting's queue. A job's id is a hash of its kind
and parameters: submitting the same work again returns the existing job (cached by parameters)
unless it failed or was cancelled. Progress is a fraction plus a message; cancellation sets a flag
the work checks between steps (featviz every step, dissections every batch), so it stops within a
step. Results are files under ``results_dir/<id>/`` plus a JSON summary.

Job records live in SQLite (``server.jobstore``) beside the results: after a restart a finished job
answers with its result and files and the same request does not compute again; a job the process
died in is ``interrupted`` and the same request runs it again (a table build continues from its
checkpoint).
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
from typing import TYPE_CHECKING, Any, Literal

from server.jobstore import JobStore

if TYPE_CHECKING:
    from server.jobstore_redis import RedisJobStore

__all__ = ["Job", "JobManager", "JobCancelled", "QueueFull", "JobStatus", "TERMINAL"]

log = logging.getLogger(__name__)
JobStatus = Literal["queued", "running", "done", "failed", "cancelled", "interrupted"]
TERMINAL: tuple[JobStatus, ...] = ("done", "failed", "cancelled", "interrupted")
PERSIST_EVERY_S = 1.0
"""Progress is written to the store at most this often (status changes always)."""


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
    status: JobStatus = "queued"
    progress: float = 0.0
    message: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    started: float | None = None
    notes: list[str] = field(default_factory=list)
    """Things worth knowing about this run (``resumed the iou pass at batch 12 of 63``)."""
    persist: Any = field(default=None, repr=False)
    """Called with the job after each change worth keeping (the manager's store writer)."""
    _persisted: float = field(default=0.0, repr=False)
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    changed: threading.Condition = field(default_factory=threading.Condition, repr=False)
    version: int = 0
    """Incremented on every change (progress, status); ``wait_changed`` waits for a newer one."""
    remote: bool = False
    """A job another server process runs (a shared store's record): read-only here; its changes
    arrive through ``JobManager.watch``."""

    def _touch(self, durable: bool = True) -> None:
        """Record a change and wake the waiters (call with ``changed`` held); ``durable`` changes
        (status, notes) are written to the store at once, progress at most every second."""
        self.version += 1
        self.changed.notify_all()
        now = time.monotonic()
        if self.persist is not None and (durable or now - self._persisted >= PERSIST_EVERY_S):
            self._persisted = now
            self.persist(self)

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
            self._touch(durable=False)

    def note(self, text: str) -> None:
        with self.changed:
            self.notes.append(text)
            self._touch()

    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    @property
    def eta_s(self) -> float | None:
        """Seconds left, extrapolated from the progress so far (None before there is any)."""
        if self.status != "running" or self.started is None or self.progress <= 0.01:
            return None
        elapsed = time.time() - self.started
        return round(elapsed * (1 - self.progress) / self.progress, 1)

    def record(self) -> dict[str, Any]:
        """The fields the store keeps."""
        return {"id": self.id, "kind": self.kind, "params": self.params, "status": self.status,
                "progress": self.progress, "message": self.message, "result": self.result, "error": self.error,
                "notes": self.notes, "created": self.created, "finished": self.finished}

    def describe(self) -> dict[str, Any]:
        return {**self.record(), "progress": round(self.progress, 4), "eta_s": self.eta_s,
                "files": sorted(p.name for p in self.directory.glob("*") if p.is_file()) if self.directory.exists() else []}


class JobManager:
    def __init__(self, results_dir: Path, max_running: int = 1, max_jobs: int = 64,
                 store: JobStore | RedisJobStore | None = None) -> None:
        self.results_dir = results_dir
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self.max_running = max_running
        self._pool: ThreadPoolExecutor | None = None
        self._stopping = False
        self.store: Any = store if store is not None else JobStore(results_dir / "jobs.sqlite3")
        self._unsaved: set[str] = set()
        """Jobs whose last change the store did not take (it was away): written again until it does."""
        self.shared = hasattr(self.store, "renew")
        """Whether other processes share the store (Redis): their jobs are found and followed, not rerun."""
        interrupted = self.store.mark_interrupted()
        if interrupted:
            log.warning("%d job(s) were interrupted by the last shutdown; the same request runs them again", interrupted)
        for record in self.store.all(4 * max_jobs):
            if self.shared and record["status"] not in TERMINAL:
                continue  # a living process runs it: found through the store when asked for
            job = self.from_record(record)
            job.persist = self._persist
            self._jobs[job.id] = job
        self._renewer: threading.Thread | None = None
        self._closed = threading.Event()
        if self.shared:
            self._renewer = threading.Thread(target=self._renew_leases, name="job-leases", daemon=True)
            self._renewer.start()

    def from_record(self, record: dict[str, Any], remote: bool = False) -> Job:
        return Job(record["id"], record["kind"], record["params"], self.results_dir / record["id"],
                   status=record["status"], progress=record["progress"], message=record["message"],
                   result=record["result"], error=record["error"], created=record["created"],
                   finished=record["finished"], notes=record["notes"], remote=remote)

    def _renew_leases(self) -> None:
        """Keep this process's live jobs leased in the shared store, pass on cancellations that other
        processes asked for, and mark the jobs of dead processes interrupted."""
        period = max(self.store.lease_ms / 3000, 0.2)
        while not self._closed.wait(period):
            with self._lock:
                live = [j for j in self._jobs.values() if j.status not in TERMINAL and not j.remote]
            try:
                self._save_unsaved()
                self.store.renew([j.id for j in live])
                self.store.mark_interrupted()  # the jobs of processes that died since
                for job in live:
                    if self.store.cancel_requested(job.id):
                        job.cancel_event.set()
            except Exception:  # the store is away for a moment: the next round tries again
                log.warning("cannot renew job leases", exc_info=True)

    def _save_unsaved(self) -> None:
        """Write the jobs whose last change the store missed (a finished record is never lost to a
        store restarting while the job ran)."""
        with self._lock:
            pending = [self._jobs[i] for i in self._unsaved if i in self._jobs]
            self._unsaved.clear()
        for job in pending:
            with job.changed:
                self._persist(job)

    def _from_store(self, job_id: str) -> Job | None:
        """A job memory does not hold, from the store: with a shared store, another process's job
        (read-only here); otherwise a finished job of this process that memory has let go of (only
        the newest are kept there), so a unit page asking for a feature visualisation made last
        week gets it back instead of waiting minutes for it again."""
        record = self.store.get(job_id)
        if record is None:
            return None
        if self.shared:
            return self.from_record(record, remote=True)
        if record["status"] != "done":
            return None
        job = self.from_record(record)
        job.persist = self._persist
        with self._lock:
            return self._jobs.setdefault(job_id, job)

    def watch(self, job: Job, timeout: float) -> Any:
        """An iterator of a remote job's records as they change (None after ``timeout`` s without one)."""
        return self.store.watch(job.id, timeout)

    def _persist(self, job: Job) -> None:
        try:
            self.store.put(job.record())
        except Exception:  # a full disk or a restarting Redis must not fail the job: written again later
            log.warning("cannot record job %s (tried again later)", job.id, exc_info=True)
            self._unsaved.add(job.id)

    @staticmethod
    def job_id(kind: str, params: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps({"kind": kind, "params": params}, sort_keys=True).encode()).hexdigest()[:20]

    def submit(self, kind: str, params: dict[str, Any], work: Callable[[Job], dict[str, Any]]) -> Job:
        """Start ``work`` as a job, or return the job already doing it or done with it (its files
        still on disk); a failed, cancelled or interrupted one runs again."""
        job_id = self.job_id(kind, params)
        if job_id not in self._jobs:
            other = self._from_store(job_id)
            if other is not None and (other.status in ("queued", "running") or
                                      (other.status == "done" and other.directory.is_dir())):
                return other  # another process runs it, or it finished (here or there): the same job
        with self._lock:
            existing = self._jobs.get(job_id)
            if existing is not None and (existing.status in ("queued", "running") or
                                         (existing.status == "done" and existing.directory.is_dir())):
                return existing
            active = sum(j.status not in TERMINAL for j in self._jobs.values())
            if active >= self.max_jobs:
                raise QueueFull(f"{active} jobs are queued or running; try again later")
            job = Job(job_id, kind, params, self.results_dir / job_id)
            if existing is not None and existing.status == "interrupted":
                job.notes.append("restarted after an interruption")
            job.persist = self._persist
            self._jobs.pop(job_id, None)
            self._jobs[job_id] = job
            while len(self._jobs) > 4 * self.max_jobs:  # forget the oldest finished jobs
                oldest = next((k for k, j in self._jobs.items() if j.status in TERMINAL), None)
                if oldest is None:
                    break
                self._jobs.pop(oldest)
            self._persist(job)
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
            job.status, job.started = "running", time.time()
            job._touch()
        try:
            job.directory.mkdir(parents=True, exist_ok=True)
            result = work(job)
        except (JobCancelled, InterruptedError):
            # stopped by a shutdown, the job did not end: the same request runs it again later
            self._finish(job, "interrupted" if self._stopping else "cancelled")
            return
        except Exception as exc:  # reported on the job; the server goes on
            log.exception("job %s (%s) failed", job.id, job.kind)
            self._finish(job, "failed", error=f"{type(exc).__name__}: {exc}")
            return
        job.result = result
        (job.directory / "result.json").write_text(json.dumps(result, indent=1))
        self._finish(job, "done")

    def _finish(self, job: Job, status: JobStatus, error: str | None = None) -> None:
        with job.changed:
            job.status, job.error, job.finished = status, error, time.time()
            if status == "done":
                job.progress = 1.0
            job._touch()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            return job
        return self._from_store(job_id)

    def cancel(self, job_id: str) -> Job | None:
        job = self.get(job_id)
        if job is not None and job.remote and job.status not in TERMINAL:
            self.store.request_cancel(job_id)  # its process sees it within a lease period
            return job
        if job is not None and job.status not in TERMINAL:
            job.cancel_event.set()
            if job.status == "queued":
                self._finish(job, "cancelled")
        return job

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until no job is queued or running (tests, benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                active = [j for j in self._jobs.values() if j.status not in TERMINAL]
            if not active:
                return True
            active[0].wait_changed(active[0].version, min(0.5, max(deadline - time.monotonic(), 0)))
        return False

    def cancel_all(self) -> None:
        with self._lock:
            ids = list(self._jobs)
        for job_id in ids:
            self.cancel(job_id)

    def shutdown(self) -> None:
        """Stop every job at its next cancellation check (recorded as interrupted, not cancelled) and wait."""
        self._stopping = True
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.status not in TERMINAL]
        for job in jobs:
            job.cancel_event.set()
            if job.status == "queued":
                self._finish(job, "interrupted")
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self._stopping = False

    def close(self) -> None:
        """Stop renewing leases (the process is going away); a last try at records the store missed."""
        self._closed.set()
        self._save_unsaved()  # _persist logs and keeps what still fails
