"""``ganpaint serve``: run the painting studio and API with uvicorn (settings: env GANPAINT_* or flags)."""

from __future__ import annotations

import argparse
import importlib.util
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from server.commands import Command, CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument("--model", dest="default_model", help="default zoo model (default world128)")
    parser.add_argument("--models-dir", type=Path, help="directory of extra generator checkpoints")
    parser.add_argument("--cache-dir", type=Path, help="dissection cache directory")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.add_argument("--cluster", action="store_true",
                        help="serve through Ray Serve on several replicas (pip install 'ganpaint[cluster]'; "
                             "docs/scaling.md)")
    parser.add_argument("--replicas", type=int, default=2, help="--cluster: replicas (default 2)")
    parser.add_argument("--painters-per-replica", type=int, default=16,
                        help="--cluster: open painting connections one replica serves (default 16)")
    parser.add_argument("--gpus-per-replica", type=float, default=0.0, help="--cluster: GPUs each replica reserves")
    parser.add_argument("--cpus-per-replica", type=float, default=1.0,
                        help="--cluster: CPUs each replica reserves (its torch threads; default 1)")
    parser.add_argument("--max-replicas", type=int,
                        help="--cluster: autoscale between --replicas and this many on open painters per replica")
    parser.add_argument("--drain-s", type=float, default=30.0,
                        help="--cluster: how long a replica being removed waits for its open painters (default 30)")
    parser.add_argument("--ray-address", help="--cluster: join this Ray cluster instead of starting a local one")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app
    from server.settings import Settings

    overrides = {k: v for k, v in vars(args).items()
                 if k in ("host", "port", "default_model", "models_dir", "cache_dir", "device") and v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise CommandError(str(exc).splitlines()[0] + ": " + exc.errors()[0]["msg"]) from exc
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _check_default_model(settings)
    if settings.job_runner == "ray" and importlib.util.find_spec("ray") is None:
        raise CommandError("GANPAINT_JOB_RUNNER=ray needs Ray: pip install 'ganpaint[cluster]'")
    if args.cluster:
        return _serve_cluster(args, settings)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, ws_max_size=settings.ws_max_bytes,
                ws_per_message_deflate=False, timeout_graceful_shutdown=10, log_level=args.log_level,
                server_header=False)
    return 0


def _serve_cluster(args: argparse.Namespace, settings: Any) -> int:
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        raise CommandError("--cluster needs Ray Serve: pip install 'ganpaint[cluster]'") from None
    if (args.replicas < 1 or args.painters_per_replica < 1 or args.gpus_per_replica < 0 or args.drain_s < 0
            or args.cpus_per_replica <= 0):
        raise CommandError("--replicas and --painters-per-replica must be at least 1, --gpus-per-replica and "
                           "--drain-s at least 0, --cpus-per-replica above 0")
    if args.max_replicas is not None and args.max_replicas < args.replicas:
        raise CommandError("--max-replicas must be at least --replicas")
    from server.cluster import ClusterConfig, deploy

    config = ClusterConfig(args.replicas, args.painters_per_replica, args.gpus_per_replica,
                           cpus_per_replica=args.cpus_per_replica, max_replicas=args.max_replicas,
                           drain_s=args.drain_s)
    deploy(settings, config, address=args.ray_address, blocking=True)
    return 0


def _check_default_model(settings) -> None:
    """Fail fast, in one line, when the default model's file is missing or unreadable."""
    from models.checkpoints import CheckpointError, load_generator
    from models.zoo import ZooError, get_entry

    try:
        load_generator(get_entry(settings.default_model, settings.zoo_dir).weights)
    except (ZooError, CheckpointError) as exc:
        raise CommandError(f"cannot start: {exc}") from exc


COMMAND = Command(name="serve", help="start the painting studio web app and API (default http://127.0.0.1:8000)",
                  add_arguments=add_arguments, run=run)
