"""The registry an engine's metrics are collected in, made on first use.

prometheus-client is imported, and the registry with the engine's
collector (engine/metrics.py) made, only when something reads the metrics:
a ``/metrics`` scrape, ``text()``, or a caller taking ``registry``. A server
adds its collector as a source before that (``add_source``): made when the
registry is, so an engine that is never scraped never loads the library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.registry import Collector

    from engine.metrics import MetricsHost


class EngineMetrics:
    """The registry an engine's metrics are collected in."""

    def __init__(self, engine: MetricsHost) -> None:
        self._engine = engine
        self._registry: CollectorRegistry | None = None
        self._sources: dict[object, Callable[[], Collector]] = {}
        self._made: dict[object, Collector] = {}

    @property
    def registry(self) -> CollectorRegistry:
        """prometheus-client's registry: the engine's collector, every
        source's, and every collector registered."""
        if self._registry is None:
            from prometheus_client import CollectorRegistry  # noqa: PLC0415  (see the docstring)

            from engine.metrics import EngineCollector  # noqa: PLC0415

            registry = CollectorRegistry(auto_describe=False)
            registry.register(EngineCollector(self._engine))
            for owner, make in self._sources.items():
                self._made[owner] = made = make()
                registry.register(made)
            self._registry = registry
        return self._registry

    def register(self, collector: Collector) -> None:
        """Adds a collector."""
        self.registry.register(collector)

    def unregister(self, collector: Collector) -> None:
        self.registry.unregister(collector)

    def add_source(self, owner: object, make: Callable[[], Collector]) -> None:
        """Adds ``owner``'s collector (a server's requests and connections),
        made by ``make`` when the registry is (at once if it is made)."""
        self._sources[owner] = make
        if self._registry is not None:
            self._made[owner] = made = make()
            self._registry.register(made)

    def remove_source(self, owner: object) -> None:
        """Removes ``owner``'s collector, made or not."""
        self._sources.pop(owner, None)
        made = self._made.pop(owner, None)
        if made is not None and self._registry is not None:
            self._registry.unregister(made)

    def text(self) -> str:
        """Every metric in Prometheus' text format."""
        from prometheus_client import generate_latest  # noqa: PLC0415

        return generate_latest(self.registry).decode()
