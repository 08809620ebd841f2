"""Helpers for the tests that run a catalog on a stream held in memory:
the catalog such a test starts from, and the state a restart would load
from what the stream kept."""

from __future__ import annotations

from collections.abc import Iterable

import msgpack

from engine.catalog import Catalog, CatalogState


def started_catalog(stream: object) -> Catalog:
    """A new catalog on ``stream`` (stream 0), its opening record written."""
    catalog = Catalog(stream, 0, CatalogState())  # type: ignore[arg-type]
    catalog.append(["catalog", 1, 0])
    return catalog


def loaded_state(payloads: Iterable[bytes]) -> CatalogState:
    """What a restart loads: every durable record, applied in order."""
    state = CatalogState()
    for payload in payloads:
        state.apply(msgpack.unpackb(payload, raw=False, strict_map_key=False))
    return state
