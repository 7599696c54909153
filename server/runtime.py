"""The single inference executor: all torch work of the web server runs on one worker thread.

Scheduling only; what a render does is ``server.painting``. Requests enter a bounded queue (full ->
``Busy``, never unbounded growth). A painter (a connection) holds at most one place in the queue: a
newer recipe from it takes over the place of its queued one, whose caller is told ``Superseded``
at once (latest wins), so one painter sending as fast as it can never crowds the others out. The
worker takes one request, gathers more for up to ``batch_wait_ms`` (at most ``max_batch``), drops
the cancelled (client gone) and those past their deadline *before* computing, and renders each
(model, layer) group in one forward pass. Results go back to the event loop through
``call_soon_threadsafe``; the loop never runs torch. Dropped requests are counted in metrics, not
logged one by one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from dissect_core.intervene import Stroke
from dissect_core.precision import resolve_precision
from server.catalog import Catalog, LoadedModel
from server.errors import Busy, DeadlineExceeded, ServiceError, Superseded
from server.metrics import Metrics
from server.painting import Painting, PaintJob, encode_image
from server.schemas import Recipe
from server.settings import DEFAULT_MAX_BATCH
from server.uploads import UploadStore

__all__ = ["InferenceExecutor", "resolve_precision", "RenderResult", "RenderError", "Busy", "Superseded",
           "DeadlineExceeded"]

log = logging.getLogger(__name__)

RequestState = Literal["queued", "superseded", "cancelled", "running", "done"]


class RenderError(ServiceError):
    """A render that failed on the server's side."""

    code, status = "render_failed", 500


@dataclass
class RenderResult:
    data: bytes
    format: str
    width: int
    height: int
    timings: dict[str, float]
    batch: int


def _consume(future: asyncio.Future) -> None:
    """Mark a settled future's exception as seen: a caller gone before its answer is not an error."""
    if not future.cancelled():
        future.exception()


@dataclass
class RenderRequest:
    model: LoadedModel
    recipe: Recipe
    preview: bool
    client: str | None
    deadline: float
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)
    state: RequestState = "queued"
    id: int = 0


@dataclass
class _Slot:
    """A place in the queue; a painter's newer recipe replaces ``request`` while the slot waits."""

    request: RenderRequest
    taken: bool = False


@dataclass
class CallRequest:
    """Arbitrary torch work (unit strips, activation queries) run in order on the worker thread."""

    fn: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    inference: bool = True
    """Run under ``torch.inference_mode``; False for work that needs gradients (CAM methods)."""


class InferenceExecutor:
    def __init__(self, catalog: Catalog, metrics: Metrics, queue_size: int = 64, max_batch: int = DEFAULT_MAX_BATCH,
                 batch_wait_ms: float = 2.0, deadline_s: float = 10.0, cache_items: int = 512,
                 dtype: torch.dtype = torch.float32, incremental: bool = True, incremental_bytes: int = 1 << 30,
                 incremental_max_fraction: float = 0.6, uploads: UploadStore | None = None) -> None:
        self.catalog = catalog
        self.metrics = metrics
        self.painting = Painting(catalog, metrics, dtype, cache_items, incremental, incremental_bytes,
                                 incremental_max_fraction, uploads)
        self.max_batch = max_batch
        self.batch_wait = batch_wait_ms / 1000
        self.deadline_s = deadline_s
        self._queue: queue.Queue[_Slot | CallRequest | None] = queue.Queue(maxsize=queue_size)
        self._slots: dict[str, _Slot] = {}
        """Each painter's queued slot (at most one)."""
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self.renders = 0

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="inference-executor", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def alive(self) -> bool:
        """Whether the worker thread runs (a replica whose executor died is unhealthy)."""
        return self._thread is not None and self._thread.is_alive()

    def _check_running(self) -> None:
        if not self.alive:
            raise ServiceError("the inference executor is not running", "unavailable", 503)

    # --- submission (event loop side) ----------------------------------------------------------
    async def render(self, model: LoadedModel, recipe: Recipe, preview: bool = False,
                     client: str | None = None) -> RenderResult:
        """Queue a render and wait for it; raises ``ServiceError`` subclasses."""
        self._check_running()
        loop = asyncio.get_running_loop()
        request = RenderRequest(model=model, recipe=recipe, preview=preview, client=client,
                                deadline=time.monotonic() + self.deadline_s, loop=loop,
                                future=loop.create_future(), id=next(self._ids))
        request.future.add_done_callback(_consume)
        with self._lock:
            slot = self._slots.get(client) if client is not None else None
            if slot is not None and not slot.taken:
                previous = slot.request
                if previous.state == "queued":
                    previous.state = "superseded"
                    self.metrics.dropped.labels(reason="superseded").inc()
                    self._resolve(previous, error=Superseded("a newer recipe from this connection replaced it"))
                slot.request = request  # the newer recipe keeps the older one's place in the queue
            else:
                slot = _Slot(request)
                try:
                    self._queue.put_nowait(slot)
                except queue.Full:
                    self.metrics.dropped.labels(reason="busy").inc()
                    raise Busy("the server is busy; try again shortly") from None
                if client is not None:
                    self._slots[client] = slot
        self.metrics.queue_depth.set(self._queue.qsize())
        try:
            return await request.future
        except asyncio.CancelledError:
            self.cancel(request)
            raise

    async def call(self, fn: Callable[[], Any], inference: bool = True) -> Any:
        """Run ``fn`` on the worker thread (after the work queued before it); returns its result."""
        self._check_running()
        loop = asyncio.get_running_loop()
        request = CallRequest(fn, loop, loop.create_future(), inference)
        request.future.add_done_callback(_consume)
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            self.metrics.dropped.labels(reason="busy").inc()
            raise Busy("the server is busy; try again shortly") from None
        return await request.future

    def cancel(self, request: RenderRequest) -> None:
        with self._lock:
            if request.state == "queued":
                request.state = "cancelled"
                self.metrics.dropped.labels(reason="disconnect").inc()

    def cancel_client(self, client: str) -> None:
        """Drop queued work and cached state of a client that went away."""
        with self._lock:
            slot = self._slots.pop(client, None)
        self.painting.forget(client)
        if slot is not None:
            self.cancel(slot.request)

    # --- worker side ------------------------------------------------------------------------------
    def _resolve(self, request: RenderRequest | CallRequest, result: Any = None,
                 error: Exception | None = None) -> None:
        def settle() -> None:
            if request.future.done():
                return
            if error is not None:
                request.future.set_exception(error)
            else:
                request.future.set_result(result)

        try:
            request.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # loop closed: nobody is waiting any more
            pass

    def _run_call(self, request: CallRequest) -> None:
        try:
            if request.inference:
                with torch.inference_mode():
                    result = request.fn()
            else:
                with torch.enable_grad():
                    result = request.fn()
        except Exception as exc:  # reported to the caller, the worker goes on
            self._resolve(request, error=exc)
        else:
            self._resolve(request, result)

    def _take(self, slot: _Slot) -> RenderRequest:
        """The request a slot holds now; the painter's next recipe will need a new slot."""
        with self._lock:
            slot.taken = True
            request = slot.request
            if request.client is not None and self._slots.get(request.client) is slot:
                del self._slots[request.client]
            return request

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            first = self._queue.get()
            if first is None:
                return
            if isinstance(first, CallRequest):
                self._run_call(first)
                continue
            batch = [self._take(first)]
            calls: list[CallRequest] = []
            until = time.monotonic() + self.batch_wait
            while len(batch) < self.max_batch:
                remaining = until - time.monotonic()
                try:
                    item = self._queue.get(timeout=max(remaining, 0)) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                if isinstance(item, CallRequest):
                    calls.append(item)
                    continue
                batch.append(self._take(item))
            self.metrics.queue_depth.set(self._queue.qsize())
            live = []
            now = time.monotonic()
            with self._lock:
                for request in batch:
                    if request.state != "queued":
                        continue
                    if now > request.deadline:
                        request.state = "done"
                        self.metrics.dropped.labels(reason="deadline").inc()
                        self._resolve(request, error=DeadlineExceeded("the request waited past its deadline"))
                        continue
                    request.state = "running"
                    live.append(request)
            groups: dict[tuple[str, str], list[RenderRequest]] = {}
            for request in live:
                layer = request.recipe.layer or request.model.edit_layer
                groups.setdefault((request.model.id, layer), []).append(request)
            for (_, layer), group in groups.items():
                self._render_group(layer, group)
            for call in calls:
                self._run_call(call)

    def _render_group(self, layer: str, group: list[RenderRequest]) -> None:
        started = time.monotonic()
        ready: list[tuple[RenderRequest, list[Stroke]]] = []
        for request in group:
            try:
                ready.append((request, self.painting.strokes(request.model, layer, request.recipe)))
            except ServiceError as exc:
                self._finish_error(request, exc)
            except Exception as exc:  # a bad request must not stop the others
                log.exception("request %s failed", request.id)
                self._finish_error(request, RenderError(f"{type(exc).__name__}: {exc}"))
        if not ready:
            return
        jobs = [PaintJob(r.model, r.recipe, r.client) for r, _ in ready]
        try:
            pixels = self.painting.render(layer, jobs, [s for _, s in ready])
        except Exception as exc:
            log.exception("render batch failed")
            for request, _ in ready:
                self._finish_error(request, RenderError(f"render failed: {type(exc).__name__}"))
            return
        compute = time.monotonic() - started
        self.renders += len(ready)
        self.metrics.batch_size.observe(len(ready))
        self.metrics.renders.inc(len(ready))
        for i, (request, _) in enumerate(ready):
            encode_start = time.monotonic()
            data, fmt = encode_image(pixels[i], request.preview)
            timings = {
                "queue_ms": round((started - request.enqueued) * 1000, 3),
                "compute_ms": round(compute * 1000, 3),
                "encode_ms": round((time.monotonic() - encode_start) * 1000, 3),
            }
            self.metrics.latency.labels(stage="queue").observe(timings["queue_ms"] / 1000)
            self.metrics.latency.labels(stage="compute").observe(compute)
            request.state = "done"
            self._resolve(request, RenderResult(data, fmt, pixels.shape[2], pixels.shape[1], timings, len(ready)))

    def _finish_error(self, request: RenderRequest, error: ServiceError) -> None:
        request.state = "done"
        self.metrics.errors.labels(code=error.code).inc()
        self._resolve(request, error=error)
