"""Checkpoints of long statistics passes, so a stopped run continues where it was.

A dissection's statistics are sums and top-k pools (``dissect_core.stats``): their state after N
batches plus "N batches done" is all a run needs to go on from batch N and end with the same table
as a run that never stopped. ``Checkpoint`` keeps that state in one file, written atomically at most
every ``every_s`` seconds and read with ``torch.load(weights_only=True)`` (tensors and plain values
only). It carries the identity of the work (model, layer, settings): a file made for other work is
ignored, never resumed from.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["Checkpoint"]

log = logging.getLogger(__name__)


class Checkpoint:
    def __init__(self, path: str | os.PathLike[str], identity: dict[str, Any], every_s: float = 30.0) -> None:
        self.path = Path(path)
        self.identity = json.dumps(identity, sort_keys=True, default=str)
        self.every_s = every_s
        self._last = time.monotonic()
        self.saves = 0

    def load(self) -> dict[str, Any] | None:
        """The saved state of this work, or None (no file, another work's file, or a damaged one)."""
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for a truncated or foreign file
            log.warning("checkpoint %s is unreadable (%s); starting over", self.path, exc)
            return None
        if not isinstance(state, dict) or state.get("identity") != self.identity:
            log.warning("checkpoint %s belongs to other work; starting over", self.path)
            return None
        return state["state"]

    def save(self, state: dict[str, Any], force: bool = False) -> bool:
        """Write ``state`` if ``every_s`` passed since the last write (or ``force``); True if written."""
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".", suffix=".tmp")
        os.close(fd)
        try:
            torch.save({"identity": self.identity, "state": state}, tmp)
            os.replace(tmp, self.path)
        except OSError as exc:  # a full disk costs the resume, not the run
            log.warning("cannot write checkpoint %s (%s)", self.path, exc)
            return False
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._last = now
        self.saves += 1
        return True

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
