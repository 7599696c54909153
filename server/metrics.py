"""Prometheus metrics, one registry per app instance (no process-global state).

The common FastAPI exporters skip websocket traffic, so the painting path is instrumented here by
hand: connections, messages, edit latency by stage, queue depth, batch size, dropped edits.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ws_connections = Gauge("ganpaint_ws_connections", "Open painting websockets", registry=r)
        self.ws_messages = Counter("ganpaint_ws_messages_total", "Websocket messages received", ["type"], registry=r)
        self.edit_latency = Histogram("ganpaint_ws_edit_latency_seconds", "Websocket edit round trip inside the server",
                                      buckets=_LATENCY_BUCKETS, registry=r)
        self.latency = Histogram("ganpaint_render_stage_seconds", "Render time by stage", ["stage"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("ganpaint_queue_depth", "Requests waiting for the inference executor", registry=r)
        self.batch_size = Histogram("ganpaint_batch_size", "Requests rendered per forward pass",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.render_work = Histogram("ganpaint_render_work_fraction",
                                     "Share of the full suffix each render computed (incremental rendering)",
                                     buckets=(0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0), registry=r)
        self.renders = Counter("ganpaint_renders_total", "Images rendered by the executor", registry=r)
        self.dropped = Counter("ganpaint_edits_dropped_total", "Requests dropped before rendering", ["reason"], registry=r)
        self.errors = Counter("ganpaint_render_errors_total", "Requests answered with an error", ["code"], registry=r)
        self.cache = Counter("ganpaint_feature_cache_total", "Edit-layer activation cache lookups", ["result"], registry=r)
        self.http_requests = Counter("ganpaint_http_requests_total", "REST requests", ["route", "status"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
