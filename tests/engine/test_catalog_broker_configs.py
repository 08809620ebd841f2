"""The catalog's broker_configs record and its place in a snapshot
(docs/engine-format.md): any sequence of changes, applied record by record,
leaves the state a snapshot of it restores, and the msgpack bytes of each
record read back to the same change."""

from __future__ import annotations

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from engine.catalog import CatalogState

SCOPES = st.sampled_from(["", "1", "2"])
NAMES = st.sampled_from(["log.retention.ms", "num.partitions", "max.connections"])
VALUES = st.one_of(st.none(), st.text(max_size=8))
CHANGES = st.lists(
    st.tuples(SCOPES, st.dictionaries(NAMES, VALUES, min_size=1, max_size=3)), max_size=12
)


@given(CHANGES)
def test_broker_config_records_and_snapshots_round_trip(
    changes: list[tuple[str, dict[str, str | None]]],
) -> None:
    state = CatalogState()
    expected: dict[str, dict[str, str]] = {}
    for scope, change in changes:
        record = ["broker_configs", scope, change]
        wire = msgpack.unpackb(msgpack.packb(record, use_bin_type=True), raw=False)
        state.apply(wire)
        configs = expected.setdefault(scope, {})
        for name, value in change.items():
            if value is None:
                configs.pop(name, None)
            else:
                configs[name] = value
        if not configs:
            del expected[scope]
    assert state.broker_configs == expected
    snapshot = msgpack.packb(["snapshot", state.to_wire()], use_bin_type=True)
    restored = CatalogState()
    restored.apply(msgpack.unpackb(snapshot, raw=False, strict_map_key=False))
    assert restored.broker_configs == expected


def test_a_snapshot_without_broker_configs_reads_as_none_set() -> None:
    """Snapshots written before the record existed have no such key."""
    state = CatalogState()
    state.apply(["snapshot", {"topics": [], "producer_ids_end": 7, "internal": {}}])
    assert state.broker_configs == {}
    assert state.producer_ids_end == 7
