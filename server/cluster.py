"""The same app over several replicas with Ray Serve (``ganpaint serve --cluster``), an optional extra.

Each replica is one process running the whole FastAPI app (``create_app``: its own executor, caches
and job workers) behind Ray Serve's proxy; a websocket stays on the replica it reached for its
whole life, so a painter's caches keep working. ``max_ongoing_requests`` is the painters a replica
serves (an open websocket holds one slot), so the next painter goes to another replica instead of
waiting. Replicas share what must be shared through ``GANPAINT_REDIS_URL`` (job records) and
``GANPAINT_CACHE_DIR`` on a shared volume (job results, tables, uploads). Plain ``ganpaint serve``
stays the single-machine default; nothing here is imported unless asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.settings import Settings

__all__ = ["ClusterConfig", "deploy", "build_app"]


@dataclass(frozen=True)
class ClusterConfig:
    replicas: int = 2
    """Replicas to start with (the fewest, when autoscaling)."""
    painters_per_replica: int = 16
    """Open painting connections one replica serves (Serve's ``max_ongoing_requests``); the next
    painter goes to another replica instead of waiting."""
    gpus_per_replica: float = 0.0
    """GPUs (or a fraction) each replica reserves; 0 on CPU."""
    cpus_per_replica: float = 1.0
    max_replicas: int | None = None
    """Above ``replicas``: Serve adds replicas while painters per replica stay above
    ``target_painters`` and removes them when they fall below (never under ``replicas``)."""
    target_painters: float | None = None
    """Open painters per replica autoscaling aims at (default three quarters of the maximum)."""
    drain_s: float = 30.0
    """A replica being removed takes no new painters and waits this long for open ones to finish;
    those still open are then closed, and their pages reconnect to another replica."""
    health_check_period_s: float = 10.0

    def deployment_options(self) -> dict[str, Any]:
        """Serve deployment options for this configuration."""
        options: dict[str, Any] = {
            "max_ongoing_requests": self.painters_per_replica,
            "health_check_period_s": self.health_check_period_s,
            "graceful_shutdown_timeout_s": self.drain_s,
            "graceful_shutdown_wait_loop_s": 1.0,
            "ray_actor_options": {"num_cpus": self.cpus_per_replica, "num_gpus": self.gpus_per_replica},
        }
        if self.max_replicas is not None and self.max_replicas > self.replicas:
            target = self.target_painters or max(1.0, 0.75 * self.painters_per_replica)
            options["autoscaling_config"] = {"min_replicas": self.replicas, "initial_replicas": self.replicas,
                                             "max_replicas": self.max_replicas, "target_ongoing_requests": target,
                                             "upscale_delay_s": 10.0, "downscale_delay_s": 120.0}
        else:
            options["num_replicas"] = self.replicas
        return options


def build_app(settings_values: dict[str, Any]) -> Any:
    """The ASGI app of one replica (built in the replica's process from plain settings values)."""
    from server.app import create_app

    return create_app(Settings(**settings_values))


class Replica:
    """One Serve replica: builds the app in its own process and tells Serve whether it is healthy
    (its inference executor alive; a busy replica is healthy, only a broken one is replaced)."""

    def __init__(self, settings_values: dict[str, Any]) -> None:
        self.settings_values = settings_values
        self._ganpaint_app: Any = None  # (the wrapper Serve adds has a property named app)

    def __serve_build_asgi_app__(self) -> Any:
        self._ganpaint_app = build_app(self.settings_values)
        return self._ganpaint_app

    def check_health(self) -> None:
        if self._ganpaint_app is None:
            return
        state = self._ganpaint_app.state.ganpaint
        if state.lifespans and not state.executor.alive:
            raise RuntimeError("the inference executor has stopped")


def deploy(settings: Settings, config: ClusterConfig, address: str | None = None, blocking: bool = False) -> Any:
    """Start (or join, with ``address``) a Ray cluster, start Serve's proxy on the settings' host and
    port, and run the app on ``config.replicas`` replicas; returns the Serve handle. Jobs compute as
    Ray tasks unless the settings say otherwise (``GANPAINT_JOB_RUNNER=local``)."""
    from ray import serve

    from server.ray_tasks import connect

    connect(address)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    if "job_runner" not in settings.model_fields_set:
        settings = settings.model_copy(update={"job_runner": "ray"})
    values = settings.model_dump(mode="json", exclude_none=True)
    token = settings.token.get_secret_value() if settings.token else None
    if token:
        values["token"] = token
    ingress: Any = serve.deployment(serve.ingress()(Replica), name="ganpaint", **config.deployment_options())
    return serve.run(ingress.bind(values), name="ganpaint", route_prefix="/", blocking=blocking)
