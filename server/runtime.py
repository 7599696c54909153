"""The single inference executor: all torch work of the web server runs on one worker thread.

Requests enter a bounded queue (full -> ``Busy``, never unbounded growth). The worker takes one,
then gathers more for up to ``batch_wait_ms`` (at most ``max_batch``), drops the ones that were
superseded (latest-wins per client), cancelled (client gone) or past their deadline *before*
computing, and renders each (model, layer) group in one forward pass: activations up to the edit
layer come from an LRU cache keyed by (model, layer, sample) or are computed together, the
per-sample edit maps are applied, and only the layers after the edit layer run. Results (encoded
image bytes) go back to the event loop through ``call_soon_threadsafe``; the loop never runs torch.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from dissect_core.intervene import Stroke, apply_edit, brush_edit, edit_maps, unit_values
from dissect_core.nethook import private_copy
from dissect_core.precision import resolve_precision
from models import incremental
from models.imaging import to_uint8
from models.samples import z_tensor
from server.catalog import Catalog, LoadedModel
from server.metrics import Metrics
from server.schemas import Recipe

from server.settings import DEFAULT_MAX_BATCH

__all__ = ["InferenceExecutor", "resolve_precision", "RenderResult", "RenderError", "Busy", "Superseded", "FeatureCache"]

log = logging.getLogger(__name__)


class RenderError(Exception):
    """A request that could not be rendered; ``code`` is the protocol error code."""

    code = "render_failed"
    status = 500

    def __init__(self, message: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code
        if status:
            self.status = status


class Busy(RenderError):
    code, status = "busy", 503


class Superseded(RenderError):
    code, status = "superseded", 409


class DeadlineExceeded(RenderError):
    code, status = "deadline", 503


@dataclass
class RenderResult:
    data: bytes
    format: str
    width: int
    height: int
    timings: dict[str, float]
    batch: int


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
    state: str = "queued"  # queued | superseded | cancelled | running | done
    id: int = 0


@dataclass
class CallRequest:
    """Arbitrary torch work (unit strips, activation queries) run in order on the worker thread."""

    fn: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    inference: bool = True
    """Run under ``torch.inference_mode``; False for work that needs gradients (CAM methods)."""


class FeatureCache:
    """Bounded LRU of activations at the edit layer, keyed by (model, layer, sample)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str, int], torch.Tensor] = OrderedDict()

    def get(self, key: tuple[str, str, int]) -> torch.Tensor | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: tuple[str, str, int], value: torch.Tensor) -> None:
        if self.capacity <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class PainterStates:
    """Each painter's last rendered layer outputs (``SuffixCache``), for incremental rendering; least
    recently used dropped beyond ``capacity`` bytes. Keyed by connection, tagged with what was rendered
    (model, layer, sample or z) so a painter who switches sample starts over."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[tuple, incremental.SuffixCache]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, client: str, tag: tuple) -> incremental.SuffixCache | None:
        with self._lock:
            item = self._items.get(client)
            if item is None or item[0] != tag:
                return None
            self._items.move_to_end(client)
            return item[1]

    def put(self, client: str, tag: tuple, cache: incremental.SuffixCache) -> None:
        size = cache.nbytes
        with self._lock:
            self._pop(client)
            if size > self.capacity:
                return
            self._items[client] = (tag, cache)
            self._bytes += size
            while self._bytes > self.capacity:
                self._pop(next(iter(self._items)))

    def drop(self, client: str) -> None:
        with self._lock:
            self._pop(client)

    def _pop(self, client: str) -> None:
        item = self._items.pop(client, None)
        if item is not None:
            self._bytes -= item[1].nbytes

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)


class InferenceExecutor:
    def __init__(self, catalog: Catalog, metrics: Metrics, queue_size: int = 64, max_batch: int = DEFAULT_MAX_BATCH,
                 batch_wait_ms: float = 2.0, deadline_s: float = 10.0, cache_items: int = 512,
                 dtype: torch.dtype = torch.float32, incremental: bool = True, incremental_bytes: int = 1 << 30,
                 incremental_max_fraction: float = 0.6) -> None:
        self.catalog = catalog
        self.incremental = incremental and incremental_bytes > 0
        self.incremental_max_fraction = incremental_max_fraction
        self.painters = PainterStates(incremental_bytes)
        self.work_fraction: deque[float] = deque(maxlen=4096)
        """Share of the full suffix each of the last renders did (1 = full, 0 = unchanged); tests read it."""
        self.dtype = dtype
        """Precision of the layers after the edit layer (features and edits stay float32)."""
        self._render_copies: dict[str, torch.nn.Module] = {}
        self.metrics = metrics
        self.max_batch = max_batch
        self.batch_wait = batch_wait_ms / 1000
        self.deadline_s = deadline_s
        self.cache = FeatureCache(cache_items)
        self._queue: queue.Queue[RenderRequest | CallRequest | None] = queue.Queue(maxsize=queue_size)
        self._latest: dict[str, RenderRequest] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self.renders = 0
        self.fail_next: Callable[[RenderRequest], None] | None = None
        """Test hook: called before each render; raising makes that request fail."""

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

    # --- submission (event loop side) ----------------------------------------------------------
    async def render(self, model: LoadedModel, recipe: Recipe, preview: bool = False,
                     client: str | None = None) -> RenderResult:
        """Queue a render and wait for it; raises ``RenderError`` subclasses."""
        if self._thread is None or not self._thread.is_alive():
            raise RenderError("the inference executor is not running", "unavailable", 503)
        loop = asyncio.get_running_loop()
        request = RenderRequest(model=model, recipe=recipe, preview=preview, client=client,
                                deadline=time.monotonic() + self.deadline_s, loop=loop,
                                future=loop.create_future(), id=next(self._ids))
        with self._lock:
            if client is not None:
                previous = self._latest.get(client)
                if previous is not None and previous.state == "queued":
                    previous.state = "superseded"
                    self.metrics.dropped.labels(reason="superseded").inc()
                    self._resolve(previous, error=Superseded("a newer recipe from this connection replaced it"))
                self._latest[client] = request
            try:
                self._queue.put_nowait(request)
            except queue.Full:
                self.metrics.dropped.labels(reason="busy").inc()
                raise Busy("the server is busy; try again shortly") from None
        self.metrics.queue_depth.set(self._queue.qsize())
        try:
            return await request.future
        except asyncio.CancelledError:
            self.cancel(request)
            raise

    async def call(self, fn: Callable[[], Any], inference: bool = True) -> Any:
        """Run ``fn`` on the worker thread (after the work queued before it); returns its result."""
        if self._thread is None or not self._thread.is_alive():
            raise RenderError("the inference executor is not running", "unavailable", 503)
        loop = asyncio.get_running_loop()
        request = CallRequest(fn, loop, loop.create_future(), inference)
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            self.metrics.dropped.labels(reason="busy").inc()
            raise Busy("the server is busy; try again shortly") from None
        return await request.future

    def _run_call(self, request: CallRequest) -> None:
        try:
            if request.inference:
                with torch.inference_mode():
                    result = request.fn()
            else:
                with torch.enable_grad():
                    result = request.fn()
        except Exception as exc:  # reported to the caller, the worker goes on
            self._resolve(request, error=exc)  # type: ignore[arg-type]
        else:
            self._resolve(request, result)  # type: ignore[arg-type]

    def cancel(self, request: RenderRequest) -> None:
        with self._lock:
            if request.state == "queued":
                request.state = "cancelled"
                self.metrics.dropped.labels(reason="disconnect").inc()

    def cancel_client(self, client: str) -> None:
        """Drop queued work of a client that went away."""
        with self._lock:
            request = self._latest.pop(client, None)
        self.painters.drop(client)
        if request is not None:
            self.cancel(request)

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

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            first = self._queue.get()
            if first is None:
                return
            if isinstance(first, CallRequest):
                self._run_call(first)
                continue
            batch = [first]
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
                batch.append(item)
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
                if self.fail_next is not None:
                    self.fail_next(request)
                ready.append((request, self._strokes(request, layer)))
            except RenderError as exc:
                self._finish_error(request, exc)
            except Exception as exc:  # a bad request must not stop the others
                log.exception("request %s failed", request.id)
                self._finish_error(request, RenderError(f"{type(exc).__name__}: {exc}"))
        if not ready:
            return
        model = ready[0][0].model
        generator = model.generator
        try:
            with torch.inference_mode():
                features = self._features(model, layer, [r for r, _ in ready])
                shape = generator.layer_shape(layer)
                maps = [edit_maps(strokes, shape, features.device) for _, strokes in ready]
                a = torch.stack([m[0] for m in maps])
                b = torch.stack([m[1] for m in maps])
                edited = apply_edit(features, a, b).to(self.dtype)
                images = self._suffix(model, layer, [r for r, _ in ready], edited)
                pixels = to_uint8(images.float())
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
            fmt = "jpeg" if request.preview else "png"
            buffer = io.BytesIO()
            if fmt == "png":
                Image.fromarray(pixels[i]).save(buffer, format="PNG", compress_level=1)
            else:
                Image.fromarray(pixels[i]).save(buffer, format="JPEG", quality=85)
            data = buffer.getvalue()
            timings = {
                "queue_ms": round((started - request.enqueued) * 1000, 3),
                "compute_ms": round(compute * 1000, 3),
                "encode_ms": round((time.monotonic() - encode_start) * 1000, 3),
            }
            self.metrics.latency.labels(stage="queue").observe(timings["queue_ms"] / 1000)
            self.metrics.latency.labels(stage="compute").observe(compute)
            request.state = "done"
            self._resolve(request, RenderResult(data, fmt, pixels.shape[2], pixels.shape[1], timings, len(ready)))

    def _suffix(self, model: LoadedModel, layer: str, requests: list[RenderRequest],
                edited: torch.Tensor) -> torch.Tensor:
        """Images for the edited edit-layer activations: painters whose last render is cached and whose
        change reaches little of the later layers are updated by windows (``models.incremental``); the
        rest run the layers after the edit layer in one batch (kept for their next edit)."""
        renderer = self._renderer(model)
        if not (self.incremental and incremental.supports(renderer, layer)):
            return renderer.forward_from(layer, edited)
        images: list[torch.Tensor | None] = [None] * len(requests)
        full: list[int] = []
        tags = [self._tag(model, layer, request) for request in requests]
        for i, request in enumerate(requests):
            cache = self.painters.get(request.client, tags[i]) if request.client is not None else None
            if cache is not None:
                box = incremental.changed_box(cache.inputs, edited[i:i + 1])
                fraction = 0.0 if box is None else incremental.window_fraction(renderer, layer, box)
                if fraction <= self.incremental_max_fraction:
                    if box is not None:
                        incremental.update(renderer, cache, edited[i:i + 1], box)
                    images[i] = cache.image[0]
                    self._record(fraction)
                    continue
            full.append(i)
        if full:
            batch = incremental.full_suffix(renderer, layer, edited[full])
            for j, i in enumerate(full):
                images[i] = batch.image[j]
                self._record(1.0)
                client = requests[i].client
                if client is not None:  # views into the batch: kept without a copy
                    self.painters.put(client, tags[i],
                                      incremental.SuffixCache(layer, edited[i:i + 1].clone(),
                                                              [o[j:j + 1] for o in batch.outputs]))
        return torch.stack(images)  # type: ignore[arg-type]

    @staticmethod
    def _tag(model: LoadedModel, layer: str, request: RenderRequest) -> tuple:
        recipe = request.recipe
        return (model.id, layer, recipe.sample if recipe.sample is not None else tuple(recipe.z or ()))

    def _record(self, fraction: float) -> None:
        self.metrics.render_work.observe(fraction)
        self.work_fraction.append(fraction)

    def _renderer(self, model: LoadedModel) -> torch.nn.Module:
        """The generator in the executor's precision (a converted copy, made once per model)."""
        if self.dtype == torch.float32:
            return model.generator
        copy = self._render_copies.get(model.id)
        if copy is None:
            copy = private_copy(model.generator).to(self.dtype)
            self._render_copies[model.id] = copy
        return copy

    def _finish_error(self, request: RenderRequest, error: RenderError) -> None:
        request.state = "done"
        self.metrics.errors.labels(code=error.code).inc()
        self._resolve(request, error=error)

    def _features(self, model: LoadedModel, layer: str, requests: list[RenderRequest]) -> torch.Tensor:
        generator = model.generator
        out: list[torch.Tensor | None] = []
        missing: list[int] = []
        for i, request in enumerate(requests):
            sample = request.recipe.sample
            cached = self.cache.get((model.id, layer, sample)) if sample is not None else None
            if cached is not None:
                self.metrics.cache.labels(result="hit").inc()
            elif sample is not None:
                self.metrics.cache.labels(result="miss").inc()
                missing.append(i)
            else:
                missing.append(i)
            out.append(cached)
        if missing:
            zs = []
            for i in missing:
                recipe = requests[i].recipe
                if recipe.sample is not None:
                    zs.append(z_tensor([recipe.sample], generator.z_dim, device=self.catalog.device))
                else:
                    zs.append(torch.tensor([recipe.z], dtype=torch.float32, device=self.catalog.device))
            computed = generator.forward_to(layer, torch.cat(zs))
            for j, i in enumerate(missing):
                out[i] = computed[j]
                sample = requests[i].recipe.sample
                if sample is not None:
                    self.cache.put((model.id, layer, sample), computed[j])
        return torch.stack(out)  # type: ignore[arg-type]

    def _strokes(self, request: RenderRequest, layer: str) -> list[Stroke]:
        """Recipe strokes -> intervention strokes (``brush_edit`` for brushes, q99 levels for units)."""
        recipe, model = request.recipe, request.model
        generator = model.generator
        if layer not in generator.layer_names or layer.startswith("output"):
            raise RenderError(f"model {model.id!r} has no editable layer {layer!r}", "unknown_layer", 422)
        if recipe.z is not None and len(recipe.z) != generator.z_dim:
            raise RenderError(f"z must have {generator.z_dim} values for model {model.id!r}", "bad_z", 422)
        channels = generator.layer_shape(layer)[0]
        table = self.catalog.table(model, layer)
        strokes: list[Stroke] = []
        levels: Any = None
        for spec in recipe.strokes:
            mask = spec.mask.to_tensor()
            if spec.action == "erase":
                strokes.append(Stroke((), (), "erase", mask, spec.mask.soft))
                continue
            if spec.brush is not None:
                if table is None:
                    status = self.catalog.ensure_table(model, layer).status
                    if status in ("unavailable", "failed"):
                        raise RenderError(f"{model.id}/{layer} has no dissection table, so no brushes; paint with "
                                          "explicit units", "no_brushes", 422)
                    raise RenderError(f"brushes of {model.id}/{layer} are not ready yet", "tables_not_ready", 503)
                try:
                    edit = brush_edit(table, spec.brush, spec.action, spec.strength)
                except KeyError:
                    raise RenderError(f"unknown brush {spec.brush!r}", "unknown_brush", 422) from None
                strokes.append(edit.stroke(spec.action, mask, spec.mask.soft))
                continue
            bad = [u for u in spec.units or [] if u >= channels]
            if bad:
                raise RenderError(f"units {bad[:5]} out of range: {layer} has {channels} units", "bad_units", 422)
            if levels is None:
                levels = table.q99 if table is not None else self.catalog.fallback_levels(model, layer).cpu().numpy()
            units = tuple(spec.units or ())
            values = unit_values(units, levels, spec.strength) if spec.action == "add" else ()
            strokes.append(Stroke(units, values, spec.action, mask, spec.mask.soft))
        return strokes
