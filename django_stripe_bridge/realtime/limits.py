"""Per-connection rate limits."""

from __future__ import annotations

import time


class TokenBucket:
    """A token bucket that starts full; ``take`` is given the rate and burst each time, so a
    settings change applies at once."""

    __slots__ = ("_at", "_tokens")

    def __init__(self, burst: float) -> None:
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self, rate: float, burst: float) -> bool:
        """Take a token (``rate`` a second on average, ``burst`` at once); whether there was one."""
        now = time.monotonic()
        self._tokens = min(burst, self._tokens + (now - self._at) * rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
