"""The app's state, one object per app: settings, catalog, executor, jobs, uploads, sessions, metrics.

Routers get it through the ``StateDep`` dependency (``server.api.deps``); it lives in a module of its
own so that routers, services and the app factory can all import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from starlette.requests import HTTPConnection

from server.auth import SessionStore
from server.caches import BytesCache
from server.catalog import Catalog
from server.devices import resolve_device
from server.jobs import JobManager
from server.metrics import Metrics
from server.ratelimit import KeyedBuckets
from server.runtime import InferenceExecutor, resolve_precision
from server.settings import Settings
from server.uploads import UploadStore

__all__ = ["AppState", "app_state"]


class AppState:
    """Everything a request handler needs, hung on ``app.state.ganpaint``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.metrics = Metrics()
        self.catalog = Catalog(settings.default_model, settings.models_dir, settings.cache_dir, settings.segmenter,
                               self.device, settings.dissect_samples, settings.causal_samples, settings.zoo_dir,
                               settings.dissect_threshold, settings.checkpoint_every_s,
                               shard_runner=self._ray_runner if settings.job_runner == "ray" else None)
        self.uploads = UploadStore(settings.cache_dir / "uploads", settings.upload_max_items, settings.upload_ttl_s)
        """Uploaded pictures (``server.api.uploads``), painted like samples."""
        self.executor = InferenceExecutor(self.catalog, self.metrics, settings.queue_size, settings.max_batch,
                                          settings.batch_wait_ms, settings.deadline_s, settings.feature_cache_items,
                                          resolve_precision(settings.precision, self.device),
                                          incremental=settings.incremental,
                                          incremental_bytes=settings.incremental_cache_mb << 20,
                                          incremental_max_fraction=settings.incremental_max_fraction,
                                          uploads=self.uploads)
        self.strips = BytesCache(64 << 20)
        """Unit top-image strips already made (the unit browser shows dozens per page)."""
        self.sessions = SessionStore(settings.session_ttl_s)
        self.login_attempts = KeyedBuckets(settings.login_per_minute / 60, burst=5)
        store = None
        if settings.redis_url:
            from server.jobstore_redis import RedisJobStore

            store = RedisJobStore(settings.redis_url)
        self.jobs = JobManager(settings.cache_dir / "jobs", max_running=settings.job_workers, store=store)
        self.classifier: torch.nn.Module | None = None
        self.ready = False
        self.draining = False
        self.lifespans = 0
        """Open lifespans: the app may be started by several servers or test clients in one process;
        the executor and jobs stop when the last one ends."""


    def _ray_runner(self) -> Any:
        from server.ray_tasks import RayRunner

        return RayRunner(self.settings.ray_task_cpus, self.settings.ray_task_gpus)

    def compute(self, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any] | None = None,
                progress: Callable[[str, float], None] | None = None,
                cancelled: Callable[[], bool] | None = None, note: Callable[[str], None] | None = None) -> Any:
        """``fn(*args, progress=progress, cancelled=cancelled, **kwargs)``: a job's heavy step, here
        or, with ``GANPAINT_JOB_RUNNER=ray``, as a task on the cluster (progress streamed back,
        cancelled by ending the task, the worker named to ``note``)."""
        if self.settings.job_runner == "ray":
            from server.ray_tasks import run_streamed

            return run_streamed(fn, args, kwargs, progress, cancelled, self.settings.ray_task_cpus,
                                self.settings.ray_task_gpus, note=note)
        return fn(*args, progress=progress, cancelled=cancelled, **(kwargs or {}))

def app_state(connection: HTTPConnection) -> AppState:
    """The state of the app serving this request or websocket."""
    state: AppState = connection.app.state.ganpaint
    return state
