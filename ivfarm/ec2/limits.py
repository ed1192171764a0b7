"""Per-farm request limits: requests in flight at once and a token-bucket request rate.

One farm over either limit gets ``RequestLimitExceeded`` (503, as AWS answers throttled calls)
while other farms are served as usual.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ivfarm.ec2.errors import Ec2Error
from ivfarm.errors import ConfigError


def request_limit() -> Ec2Error:
    """What a throttled request answers."""
    return Ec2Error("RequestLimitExceeded", "Request limit exceeded.", 503)


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    in_flight: int = 0


class FarmLimits:
    """``concurrent`` requests in flight per farm; ``rate`` per second refilling a bucket of ``burst``."""

    def __init__(self, concurrent: int, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if concurrent < 1 or rate <= 0 or burst < 1:
            raise ConfigError("ec2.limits: concurrent, rate_per_s and burst must be positive")
        self.concurrent, self.rate, self.burst = concurrent, float(rate), float(burst)
        self._clock = clock
        self._buckets: dict[int, _Bucket] = {}
        self._lock = threading.Lock()

    def _take(self, farm_id: int) -> None:
        now = self._clock()
        with self._lock:
            bucket = self._buckets.setdefault(farm_id, _Bucket(self.burst, now))
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
            if bucket.tokens < 1 or bucket.in_flight >= self.concurrent:
                raise request_limit()
            bucket.tokens -= 1
            bucket.in_flight += 1

    def _release(self, farm_id: int) -> None:
        with self._lock:
            self._buckets[farm_id].in_flight -= 1

    @contextmanager
    def admit(self, farm_id: int) -> Iterator[None]:
        """Hold one of the farm's request slots (RequestLimitExceeded when none is free)."""
        self._take(farm_id)
        try:
            yield
        finally:
            self._release(farm_id)
