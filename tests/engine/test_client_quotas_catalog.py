"""Client quotas in the catalog: ``client_quotas`` records applied in any
order give what a model of the document's table gives, and a snapshot
(msgpack and back) keeps them."""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from engine.catalog import CatalogState
from engine.quota_entities import KEYS, Entity, entity_to_wire

NAME = st.one_of(st.none(), st.sampled_from(["alice", "bob", "app"]))
ENTITY = st.one_of(
    st.tuples(st.tuples(st.just("user"), NAME)),
    st.tuples(st.tuples(st.just("client-id"), NAME)),
    st.tuples(st.tuples(st.just("client-id"), NAME), st.tuples(st.just("user"), NAME)),
)
CHANGES = st.dictionaries(
    st.sampled_from(sorted(KEYS)),
    st.one_of(st.none(), st.integers(1, 10**9).map(float)),
    min_size=1,
)


@given(st.lists(st.tuples(ENTITY, CHANGES), max_size=30))
def test_records_and_snapshots_keep_what_was_set(changes: list[tuple[Entity, Any]]) -> None:
    state = CatalogState()
    model: dict[Entity, dict[str, float]] = {}
    for entity, change in changes:
        record = msgpack.unpackb(
            msgpack.packb(["client_quotas", entity_to_wire(entity), change]), raw=False
        )
        state.apply(record)
        quotas = model.setdefault(entity, {})
        for key, value in change.items():
            quotas.pop(key, None)
            if value is not None:
                quotas[key] = value
        if not quotas:
            del model[entity]
    assert state.client_quotas == model
    snapshot = msgpack.unpackb(
        msgpack.packb(["snapshot", state.to_wire()]), raw=False, strict_map_key=False
    )
    restored = CatalogState()
    restored.apply(snapshot)
    assert restored.client_quotas == model
