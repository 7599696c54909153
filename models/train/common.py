"""What every training recipe shares: run directories, resumable checkpoints, loss logs, progress.

A run directory holds ``config.json`` (the arguments, saved once; a resumed run must agree),
``checkpoint.pt`` (everything needed to resume; tensors and plain values only, so it loads with
``weights_only=True``), ``log.jsonl`` (one JSON object per logged step) and the outputs.
"""

from __future__ import annotations

import json
import os
import random
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["RunDir", "seed_everything", "TrainingCancelled", "stop_signals"]


class TrainingCancelled(Exception):
    """Raised when a run stops early, planned (``max_seconds``) or interrupted (a signal); the
    checkpoint written just before lets it resume."""

    def __init__(self, message: str, interrupted: bool = True) -> None:
        super().__init__(message)
        self.interrupted = interrupted


@contextmanager
def stop_signals() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT, which background jobs may ignore) into KeyboardInterrupt, so that a
    stopped run writes its checkpoint; the previous handlers are restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class RunDir:
    """A training run's directory."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    def save_config(self, config: Any, resume: bool, adjustable: tuple[str, ...] = ()) -> None:
        """Write the config; a resumed run must agree with the saved one except in ``adjustable`` keys
        (such as the length of the last phase), whose new values are recorded."""
        data = asdict(config) if hasattr(config, "__dataclass_fields__") else dict(config)
        path = self.path / "config.json"
        if resume and path.exists() and self.checkpoint_path.exists():
            saved = json.loads(path.read_text())
            changed = {k for k in set(saved) | set(data) if saved.get(k) != data.get(k)}
            fixed = sorted(changed - set(adjustable))
            if fixed:
                raise ValueError(f"{path}: resumed run differs from its saved config in {fixed}")
            if not changed:
                return
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        """Atomically replace ``checkpoint.pt``."""
        fd, tmp = tempfile.mkstemp(dir=self.path, suffix=".tmp")
        os.close(fd)
        try:
            torch.save(dict(state), tmp)
            os.replace(tmp, self.checkpoint_path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def load_checkpoint(self) -> dict[str, Any] | None:
        if not self.checkpoint_path.exists():
            return None
        return torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)

    def log(self, **values: Any) -> None:
        """Append one line to ``log.jsonl`` (with a wall-clock time stamp)."""
        values = {"time": round(time.time(), 3), **values}
        with (self.path / "log.jsonl").open("a") as handle:
            handle.write(json.dumps(values) + "\n")


def rng_state() -> dict[str, Any]:
    """The global generator states, storable in a weights-only checkpoint."""
    np_state: tuple[Any, ...] = tuple(np.random.get_state())
    return {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": repr(random.getstate()),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    import ast

    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), int(state["numpy_pos"]), 0, 0.0))
    random.setstate(ast.literal_eval(state["python"]))
