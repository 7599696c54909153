"""The painting caches: edit-layer activations per sample, and each painter's last layer outputs."""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch

from models import incremental

__all__ = ["FeatureCache", "PainterStates", "BytesCache"]


class FeatureCache:
    """Bounded LRU of activations at the edit layer, keyed by (model, layer, sample): they depend only on
    the sample, so an edit re-runs only the layers after the edit layer."""

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


PainterTag = tuple[str, str, int | tuple[float, ...] | tuple[str, str, str]]
"""What a painter's cached outputs were rendered for: (model, layer, sample or z)."""


class PainterStates:
    """Each painter's last rendered layer outputs (``SuffixCache``), for incremental rendering; least
    recently used dropped beyond ``capacity`` bytes. Keyed by connection, tagged with what was rendered
    so a painter who switches sample starts over."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[PainterTag, incremental.SuffixCache]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, client: str, tag: PainterTag) -> incremental.SuffixCache | None:
        with self._lock:
            item = self._items.get(client)
            if item is None or item[0] != tag:
                return None
            self._items.move_to_end(client)
            return item[1]

    def put(self, client: str, tag: PainterTag, cache: incremental.SuffixCache) -> None:
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


class BytesCache:
    """Encoded results (unit strips) by key, least recently used dropped beyond ``capacity`` bytes.
    A unit's strip depends only on the model, layer, unit and count, so a page visit after the first
    costs a dictionary lookup instead of a generator run."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple, value: bytes) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            if len(value) > self.capacity:
                return
            self._items[key] = value
            self._bytes += len(value)
            while self._bytes > self.capacity:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)

    def __len__(self) -> int:
        return len(self._items)
