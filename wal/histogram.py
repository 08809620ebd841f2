"""A histogram kept in plain numbers by one writer thread (the WAL's
writer, the server's event loop) and read by a scrape from any thread.

prometheus-client's own Histogram takes a lock per observation; on the
WAL's group commit and the server's request path that is avoidable cost.
A reader may see a count one observation ahead of the sum: harmless for
monitoring, and never torn (each field is a single Python object).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

LATENCY_BOUNDS_S = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Seconds: from a fast fsync (100 µs) to a stalled request."""


class PlainHistogram:
    """Counts of observations at or below each bound, their sum and count."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BOUNDS_S) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        """Per bucket (not cumulative); the last one is above every bound."""
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus' buckets: (upper bound, observations at or below it), +Inf last."""
        total = 0
        buckets = []
        for bound, count in zip((*self.bounds, float("inf")), list(self.counts), strict=True):
            total += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return buckets
