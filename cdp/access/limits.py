"""Rate limits: token buckets by key (a source, a token, a client address), in memory."""

import time
from typing import Final

# Keys remembered at most: beyond that, full buckets are forgotten (they hold nothing to
# remember), then every bucket, so that a flood from many addresses cannot grow memory.
_KEYS: Final = 10_000


class Limiter:
    """Each key may take `rate` a second, `burst` at once (a second's worth, at least 10)."""

    def __init__(self, rate: float, keys: int = _KEYS) -> None:
        self.rate, self.burst, self.keys = rate, max(rate, 10.0), keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key: (tokens, when counted)

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def take(self, key: str) -> float:
        """Take one for `key`: 0 if it may go ahead, else the seconds until it may."""
        if self.unlimited:
            return 0.0
        now = time.monotonic()
        tokens, then = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
        if key not in self._buckets and len(self._buckets) >= self.keys:
            self._forget(now)
        self._buckets[key] = (tokens - 1, now)
        return 0.0

    def would_refuse(self, key: str) -> bool:
        """Is `key`'s bucket empty (without taking from it)?"""
        if self.unlimited or key not in self._buckets:
            return False
        tokens, then = self._buckets[key]
        return tokens + (time.monotonic() - then) * self.rate < 1

    def _forget(self, now: float) -> None:
        self._buckets = {
            key: (tokens, then)
            for key, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * self.rate < self.burst
        }
        if len(self._buckets) >= self.keys:
            self._buckets.clear()
