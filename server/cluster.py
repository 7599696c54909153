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

import os
from dataclasses import dataclass
from typing import Any

from server.settings import Settings

__all__ = ["ClusterConfig", "deploy", "build_app"]


@dataclass(frozen=True)
class ClusterConfig:
    replicas: int = 2
    painters_per_replica: int = 16
    """Open painting connections one replica serves (Serve's ``max_ongoing_requests``)."""
    gpus_per_replica: float = 0.0
    """GPUs (or a fraction) each replica reserves; 0 on CPU."""
    cpus_per_replica: float = 1.0
    health_check_period_s: float = 10.0


def build_app(settings_values: dict[str, Any]) -> Any:
    """The ASGI app of one replica (built in the replica's process from plain settings values)."""
    from server.app import create_app

    return create_app(Settings(**settings_values))


def deploy(settings: Settings, config: ClusterConfig, address: str | None = None, blocking: bool = False) -> Any:
    """Start (or join, with ``address``) a Ray cluster, start Serve's proxy on the settings' host and
    port, and run the app on ``config.replicas`` replicas; returns the Serve handle."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    values = settings.model_dump(mode="json", exclude_none=True)
    token = settings.token.get_secret_value() if settings.token else None
    if token:
        values["token"] = token

    def build() -> Any:
        return build_app(values)

    ingress: Any = serve.deployment(
        serve.ingress(build)(), name="ganpaint", num_replicas=config.replicas,
        max_ongoing_requests=config.painters_per_replica, health_check_period_s=config.health_check_period_s,
        ray_actor_options={"num_cpus": config.cpus_per_replica, "num_gpus": config.gpus_per_replica},
    )
    return serve.run(ingress.bind(), name="ganpaint", route_prefix="/", blocking=blocking)
