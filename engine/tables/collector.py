"""The table topics' counters as Prometheus metrics: a collector for the
engine's registry, imported with it (never by an engine that is not
scraped: prometheus-client is loaded on the first read of the metrics)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.tables.service import TableService


class TablesCollector(Collector):
    """The table topics' counters for the engine's metrics registry."""

    def __init__(self, service: TableService) -> None:
        self._service = service

    def collect(self) -> Iterator[Any]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "records": CounterMetricFamily(
                "tidelog_table_records", "Rows written to table topics' tables.", labels=["topic"]
            ),
            "files": CounterMetricFamily(
                "tidelog_table_files", "Data files added to tables.", labels=["topic"]
            ),
            "commits": CounterMetricFamily(
                "tidelog_table_commits", "Table commits that added rows.", labels=["topic"]
            ),
            "skipped": CounterMetricFamily(
                "tidelog_table_skipped_records",
                "Records the log lost before the table got them.",
                labels=["topic"],
            ),
            "expired_snapshots": CounterMetricFamily(
                "tidelog_table_expired_snapshots",
                "Snapshots of tables expired ([tables] keep_snapshots_s).",
                labels=["topic"],
            ),
            "lag": GaugeMetricFamily(
                "tidelog_table_lag_records",
                "Settled records not in the table yet (as of the last pass).",
                labels=["topic"],
            ),
        }
        for status in self._service.status():
            for name, family in families.items():
                family.add_metric([status.topic], getattr(status, name))
        yield from families.values()
