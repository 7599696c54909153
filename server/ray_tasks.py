"""Jobs as Ray tasks (``GANPAINT_JOB_RUNNER=ray``): where a clustered server sends its heavy work.

The job itself (record, progress, cancel) stays with the replica's ``JobManager``; only the compute
moves. ``RayRunner`` runs a dissection's shard tasks (``dissect_core.sharded``) over the cluster's
workers, each task retried by Ray if its worker dies; ``run_streamed`` runs one whole job step
(an inversion) on a worker and streams its progress back (a Ray streaming generator). Cancelling a
job cancels its tasks. Ray is imported only here, and only when this runner is configured.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["RayRunner", "run_streamed", "connect"]

POLL_S = 0.25
"""How often a waiting coordinator checks whether its job was cancelled."""


def connect(address: str | None = None) -> Any:
    """The ``ray`` module, connected: a Serve replica is already a Ray worker; otherwise join
    ``address`` (or ``RAY_ADDRESS``), or start a local cluster on 127.0.0.1."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if not ray.is_initialized():
        joining = bool(address or os.environ.get("RAY_ADDRESS"))
        ray.init(address=address, log_to_driver=False, include_dashboard=False,
                 _node_ip_address=None if joining else "127.0.0.1")
    return ray


def _device_for(num_gpus: float) -> str:
    return "cuda" if num_gpus > 0 else "cpu"


def _on_device(value: Any, device: str) -> Any:
    """Modules move to the task's device; everything else is passed as is."""
    import torch

    if device != "cpu" and isinstance(value, torch.nn.Module):
        return value.to(device)
    return value


def _shard_task(fn: Callable[..., Any], device: str, *args: Any) -> Any:
    """One shard in a worker: its models on the worker's device, its statistics back on the CPU."""
    result = fn(*(_on_device(a, device) for a in args))
    return _to_cpu(result) if device != "cpu" else result


def _to_cpu(value: Any) -> Any:
    """A task's result with every tensor and module moved to the CPU (the coordinator has no GPU)."""
    import dataclasses

    import torch

    if isinstance(value, (torch.Tensor, torch.nn.Module)):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    if dataclasses.is_dataclass(value) or hasattr(value, "state_dict"):
        for name, item in vars(value).items():
            if isinstance(item, (torch.Tensor, torch.nn.Module, dict, list, tuple)) or dataclasses.is_dataclass(item):
                setattr(value, name, _to_cpu(item))
    return value


class RayRunner:
    """A ``ShardRunner`` over a Ray cluster: every shard a task (``num_cpus``/``num_gpus`` each), up
    to ``workers`` at once (default: as many as the cluster's resources hold); the next shard goes to
    whichever worker is free, so a fast worker takes more."""

    def __init__(self, num_cpus: float = 1.0, num_gpus: float = 0.0, workers: int | None = None,
                 max_retries: int = 3, address: str | None = None) -> None:
        self.ray = connect(address)
        self.num_cpus, self.num_gpus, self.max_retries = num_cpus, num_gpus, max_retries
        if workers is None:
            resources = self.ray.cluster_resources()
            by_cpu = resources.get("CPU", 1.0) / num_cpus
            by_gpu = resources.get("GPU", 0.0) / num_gpus if num_gpus > 0 else by_cpu
            workers = max(1, int(min(by_cpu, by_gpu)))
        self.workers = workers

    def map(self, fn: Callable[..., Any], shared: tuple, shards: Sequence[Any],
            cancelled: Callable[[], bool] | None = None) -> Iterator[tuple[int, Any]]:
        """At most ``workers`` of this job's tasks are out at once, the next sent as one returns:
        other jobs' tasks interleave with them instead of queueing behind all of this one's."""
        ray = self.ray
        task = ray.remote(_shard_task).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                                               max_retries=self.max_retries)
        refs = [ray.put(value) for value in shared]  # once, not once per shard
        device = _device_for(self.num_gpus)
        waiting = list(enumerate(shards))[::-1]
        pending: dict[Any, int] = {}
        try:
            while waiting or pending:
                while waiting and len(pending) < self.workers:
                    index, shard = waiting.pop()
                    pending[task.remote(fn, device, *refs, shard)] = index
                if cancelled is not None and cancelled():
                    raise InterruptedError("job cancelled")
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    index = pending.pop(ref)
                    yield index, ray.get(ref)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


def _streamed(fn: Callable[..., Any], device: str, args: tuple, kwargs: dict) -> Iterator[tuple[str, Any]]:
    """In the worker: run ``fn(*args, progress=..., cancelled=None, **kwargs)`` in a thread (the
    coordinator cancels by ending the task), yielding
    ``("worker", host:pid)``, its progress calls as ``("progress", (stage, fraction))`` and then
    ``("result", value)``."""
    updates: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            result = fn(*(_on_device(a, device) for a in args),
                        progress=lambda stage, fraction: updates.put((stage, fraction)), cancelled=None, **kwargs)
            outcome["result"] = _to_cpu(result) if device != "cpu" else result
        except BaseException as exc:
            outcome["error"] = exc
        updates.put(None)

    threading.Thread(target=target, daemon=True).start()
    yield "worker", f"{socket.gethostname()}:{os.getpid()}"
    while (update := updates.get()) is not None:
        yield "progress", update
    if "error" in outcome:
        raise outcome["error"]
    yield "result", outcome["result"]


def run_streamed(fn: Callable[..., Any], args: tuple, kwargs: dict | None = None,
                 progress: Callable[[str, float], None] | None = None, cancelled: Callable[[], bool] | None = None,
                 num_cpus: float = 1.0, num_gpus: float = 0.0, address: str | None = None,
                 note: Callable[[str], None] | None = None) -> Any:
    """``fn(*args, progress=..., cancelled=None, **kwargs)`` as one Ray task; its progress calls
    reach ``progress`` here as they happen, and ``note`` hears which worker took it. Cancelling
    stops the task (its worker process is ended)."""
    import torch

    ray = connect(address)
    args = tuple(_to_cpu(a) if isinstance(a, (torch.Tensor, torch.nn.Module)) else a for a in args)
    task = ray.remote(_streamed).options(num_cpus=num_cpus, num_gpus=num_gpus, num_returns="streaming",
                                         max_retries=0)
    stream = task.remote(fn, _device_for(num_gpus), args, kwargs or {})
    try:
        while True:
            if cancelled is not None and cancelled():
                raise InterruptedError("job cancelled")
            ready, _ = ray.wait([stream], num_returns=1, timeout=POLL_S)
            if not ready:
                continue
            try:
                kind, value = ray.get(next(stream))
            except StopIteration:
                raise RuntimeError("the task ended without a result") from None
            if kind == "result":
                return value
            if kind == "worker":
                if note is not None:
                    note(f"computed as a Ray task on worker {value}")
            elif progress is not None:
                progress(*value)
    except BaseException:  # cancelled here, or the job stopped: end the task (a finished one is left alone)
        ray.cancel(stream, force=True)
        raise
