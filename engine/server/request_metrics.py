"""The wire server's metrics: requests by API, version and error code with
their latency, connections by listener, bytes in flight, back-pressure
pauses and quota throttles (docs/operations.md).

The connection counts in plain ints and dicts on the event loop, one
update per request (never per record, and without prometheus-client's
locks); ``ServerCollector`` turns them into metric families when
``/metrics`` is scraped. It is added to the engine's registry
(``engine.metrics()``), so one scrape shows the engine and the server.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

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


class _Stats(Protocol):
    connections: int
    bytes_in: int
    bytes_out: int


class _Listener(Protocol):
    @property
    def name(self) -> str: ...


class _Connection(Protocol):
    @property
    def listener(self) -> _Listener: ...


class _Config(Protocol):
    @property
    def effective_listeners(self) -> Sequence[_Listener]: ...


class MeteredServer(Protocol):
    """What the collector reads of the server (server.py's Server)."""

    request_metrics: RequestMetrics
    inflight_bytes: int

    @property
    def stats(self) -> _Stats: ...
    @property
    def config(self) -> _Config: ...
    @property
    def connections(self) -> Collection[_Connection]: ...
    @property
    def paused(self) -> Collection[_Connection]: ...


class ServerCollector(Collector):
    """Reads a server's counters and connections at scrape time."""

    def __init__(self, server: MeteredServer) -> None:
        self._server = server

    def collect(self) -> Iterator[Metric]:
        server = self._server
        metrics = server.request_metrics
        requests = CounterMetricFamily(
            "tidelog_requests",
            "Requests answered, by API, version and the response's top-level error code.",
            labels=["api", "version", "error_code"],
        )
        for (api_key, version, error), count in list(metrics.requests.items()):
            requests.add_metric([api_name(api_key), str(version), str(error)], count)
        yield requests
        latency = HistogramMetricFamily(
            "tidelog_request_latency_seconds",
            "From a request read whole to its response written (Produce: the ack latency).",
            labels=["api"],
        )
        for api_key, histogram in list(metrics.latency.items()):
            latency.add_metric([api_name(api_key)], histogram.cumulative(), histogram.sum)
        yield latency
        by_listener = Counter(c.listener.name for c in list(server.connections))
        connections = GaugeMetricFamily(
            "tidelog_connections", "Open client connections, by listener.", labels=["listener"]
        )
        for listener in server.config.effective_listeners:
            connections.add_metric([listener.name], by_listener.get(listener.name, 0))
        yield connections
        stats = server.stats
        yield CounterMetricFamily(
            "tidelog_connections_accepted", "Connections accepted.", value=stats.connections
        )
        yield CounterMetricFamily(
            "tidelog_network_bytes_in", "Request bytes read.", value=stats.bytes_in
        )
        yield CounterMetricFamily(
            "tidelog_network_bytes_out", "Response bytes written.", value=stats.bytes_out
        )
        yield GaugeMetricFamily(
            "tidelog_inflight_bytes",
            "Request bytes read and not yet answered (max_inflight_bytes bounds it).",
            value=server.inflight_bytes,
        )
        yield GaugeMetricFamily(
            "tidelog_paused_connections",
            "Connections not read until bytes in flight fall (back-pressure).",
            value=len(server.paused),
        )
        pauses = CounterMetricFamily(
            "tidelog_backpressure_pauses",
            "Times a connection stopped being read, by reason.",
            labels=["reason"],
        )
        for reason, count in list(metrics.pauses.items()):
            pauses.add_metric([reason], count)
        yield pauses
        throttles = CounterMetricFamily(
            "tidelog_quota_throttles",
            "Responses that carried a quota's throttle time, by API.",
            labels=["api"],
        )
        for api_key, count in list(metrics.throttles.items()):
            throttles.add_metric([api_name(api_key)], count)
        yield throttles
