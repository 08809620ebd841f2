"""What ``/metrics`` shows of a wire server: its counters (request_metrics.py)
and connections as metric families, read at scrape time. A module of its
own so that prometheus-client is imported only when the metrics are read
(engine/metrics_registry.py)."""

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

from engine.server.request_metrics import RequestMetrics, api_name


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
    non_reader_held_bytes: int

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
            "tidelog_non_reader_held_bytes",
            "Request bytes held unread for clients that read no answers, outside "
            "max_inflight_bytes (with tidelog_inflight_bytes: everything held).",
            value=server.non_reader_held_bytes,
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
