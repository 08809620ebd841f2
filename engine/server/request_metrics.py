"""The wire server's metrics: requests by API, version and error code with
their latency, connections by listener, bytes in flight, back-pressure
pauses and quota throttles (docs/operations.md).

The connection counts in plain ints and dicts on the event loop, one
update per request (never per record, and without prometheus-client's
locks); ``ServerCollector`` (server_collector.py) turns them into metric
families when ``/metrics`` is scraped. It is added to the engine's registry
(``engine.metrics()``), so one scrape shows the engine and the server.
"""

from __future__ import annotations

from collections import Counter

from engine.protocol.apis import ApiKey
from wal.histogram import PlainHistogram


def api_name(api_key: int) -> str:
    """Kafka's name of an API key (``Produce``, ``Fetch``), or its number."""
    try:
        return "".join(part.capitalize() for part in ApiKey(api_key).name.split("_"))
    except ValueError:
        return str(api_key)


class RequestMetrics:
    """What the connections count as they answer, on the event loop."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[int, int, int]] = Counter()
        """Answered requests by (API key, version, top-level error code)."""
        self.latency: dict[int, PlainHistogram] = {}
        """Seconds from a request read whole to its response handed to the
        socket, by API key (for Produce: the acknowledgement latency)."""
        self.pauses: Counter[str] = Counter()
        """Times a connection stopped being read, by reason."""
        self.throttles: Counter[int] = Counter()
        """Responses that carried a quota's throttle time, by API key."""

    def answered(self, api_key: int, version: int, error_code: int, seconds: float) -> None:
        self.requests[api_key, version, int(error_code)] += 1
        histogram = self.latency.get(api_key)
        if histogram is None:
            histogram = self.latency[api_key] = PlainHistogram()
        histogram.observe(seconds)
