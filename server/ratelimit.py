"""Token buckets: a steady rate with a burst, for a painter's messages and for sign-in attempts."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

__all__ = ["TokenBucket", "KeyedBuckets"]


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up. ``take`` spends one and says how long to
    wait before acting when none was left (0 when one was)."""

    def __init__(self, rate: float, burst: float, clock=time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens = burst
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def take(self) -> float:
        """Spend a token (going into debt if there is none) and return the wait that pays the debt back."""
        self._refill()
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def try_take(self) -> float:
        """Spend a token if there is one (returns 0); otherwise spend nothing and return the wait."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


class KeyedBuckets:
    """One bucket per key (a client address), the least recently used forgotten beyond ``max_keys``."""

    def __init__(self, rate: float, burst: float, max_keys: int = 10_000, clock=time.monotonic) -> None:
        self.rate, self.burst, self.max_keys, self._clock = rate, burst, max_keys, clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def try_take(self, key: str) -> float:
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self._clock)
                while len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
            self._buckets.move_to_end(key)
            return bucket.try_take()
