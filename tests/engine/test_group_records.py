"""The groups state log's records (engine/groups/records.py): each kind of
key and value, as the coordinator writes them, encodes exactly as pinned
bytes, and a coordinator opens a state log made of them (an engine with
groups stored by an earlier version opens with this one); any record read
back through msgpack is the record written."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from engine.clock import ManualClock
from engine.groups import GroupCoordinator
from engine.groups.config import GroupConfig
from engine.groups.consumer_group import ConsumerGroup
from engine.groups.group_configs import (
    CONSUMER_HEARTBEAT_INTERVAL_MS,
    CONSUMER_SESSION_TIMEOUT_MS,
    GroupConfigs,
)
from engine.groups.records import (
    CommittedOffset,
    PendingOffset,
    StoredConsumerGroup,
    StoredConsumerMember,
    StoredGroup,
    StoredGroupConfig,
    StoredMember,
    StoredState,
    classic_group_key,
    consumer_group_key,
    consumer_member_key,
    group_config_key,
    offset_key,
    read_state,
    txn_key,
)
from engine.groups.topic_subscriptions import TopicInfo
from engine.state_log import StateLog
from engine.types import OffsetAndMetadata, TopicPartition
from s3stream import StreamStore
from tests.engine.conftest import FAST_STORE
from tests.engine.test_consumer_group import FakeHost, join

T0 = 1_700_000_000_000
SESSION, INTERVAL = CONSUMER_SESSION_TIMEOUT_MS, CONSUMER_HEARTBEAT_INTERVAL_MS
ORDERS_ID = b"orders".ljust(16, b".")

PINNED: dict[Hashable, bytes] = {
    ("consumer_group", "cg"): bytes.fromhex(
        "92a3707574919292ae636f6e73756d65725f67726f7570a2636785a17601a565706f636801b06173"
        "7369676e6d656e745f65706f636801a6746f706963739193a66f7264657273c4106f72646572732e"
        "2e2e2e2e2e2e2e2e2e04af73746174655f74696d657374616d70cf0000018bcfe56800"
    ),
    ("consumer_member", "cg", "member-1"): bytes.fromhex(
        "92a3707574919293af636f6e73756d65725f6d656d626572a26367a86d656d6265722d318eab696e"
        "7374616e63655f6964a3692d31a77261636b5f6964c0a9636c69656e745f6964a6636c69656e74ab"
        "636c69656e745f686f7374aa2f3132372e302e302e31a6746f7069637391a66f7264657273a57265"
        "676578c0a861737369676e6f72c0b4726562616c616e63655f74696d656f75745f6d73cd01f4a565"
        "706f636801ae70726576696f75735f65706f636800a57374617465a6737461626c65a86173736967"
        "6e65649192c4106f72646572732e2e2e2e2e2e2e2e2e2e9400010203a87265766f6b696e6790a674"
        "61726765749192c4106f72646572732e2e2e2e2e2e2e2e2e2e9400010203"
    ),
    ("group_config", "g"): bytes.fromhex(
        "92a3707574919292ac67726f75705f636f6e666967a16782a17601a7636f6e6669677382be636f6e"
        "73756d65722e6865617274626561742e696e74657276616c2e6d73a3393030bb636f6e73756d6572"
        "2e73657373696f6e2e74696d656f75742e6d73a433303030"
    ),
    ("group", "g"): bytes.fromhex(
        "92a3707574919292a567726f7570a16787a17601ad70726f746f636f6c5f74797065a8636f6e7375"
        "6d6572aa67656e65726174696f6e03a870726f746f636f6ca572616e6765a66c6561646572a26d31"
        "af73746174655f74696d657374616d70cf0000018bcfe56800a76d656d626572739198a26d31c0a6"
        "636c69656e74aa2f3132372e302e302e31cd1388cd2710c4046d657461c40661737369676e"
    ),
    ("offset", "g", "orders", 0): bytes.fromhex(
        "92a3707574919294a66f6666736574a167a66f72646572730086a66f66667365742aac6c65616465"
        "725f65706f636807a86d65746164617461a26d64b0636f6d6d69745f74696d657374616d70cf0000"
        "018bcfe56801b06578706972655f74696d657374616d70ffa873657175656e636505"
    ),
    ("txn", 1000, "g", "orders", 1): bytes.fromhex(
        "92a3707574919295a374786ecd03e8a167a66f72646572730187ae70726f64756365725f65706f63"
        "6802a66f66667365742bac6c65616465725f65706f6368ffa86d65746164617461a0b0636f6d6d69"
        "745f74696d657374616d70cf0000018bcfe56802b06578706972655f74696d657374616d70ffa873"
        "657175656e636506"
    ),
}
"""Each a whole state-log record, ``["put", [[key, value]]]``, as msgpack."""


def _record(key: Hashable, value: Any) -> bytes:
    packed: bytes = msgpack.packb(["put", [[key, value]]], use_bin_type=True)
    return packed


def built_records() -> dict[Hashable, Any]:
    """Every kind of record, built by the coordinator's own builders."""
    host = FakeHost()
    host.add_topic("orders", 4)
    host.clock_ms = T0
    join(
        ConsumerGroup("cg", host),
        "member-1",
        ["orders"],
        client_id="client",
        client_host="/127.0.0.1",
        instance_id="i-1",
    )
    records = dict(host.state)
    member = StoredMember("m1", None, "client", "/127.0.0.1", 5000, 10000, b"meta", b"assign")
    records[classic_group_key("g")] = StoredGroup(
        "consumer", 3, "range", "m1", T0, [member]
    ).to_value()
    configs = GroupConfigs(
        GroupConfig(
            group_consumer_min_session_timeout_ms=1000,
            group_consumer_min_heartbeat_interval_ms=100,
        )
    )
    overrides = configs.altered("g", {SESSION: "3000", INTERVAL: "900"})
    records.update(configs.store("g", overrides)[0])
    records[offset_key("g", TopicPartition("orders", 0))] = CommittedOffset(
        42, 7, "md", T0 + 1, -1, 5
    ).to_value()
    records[txn_key(1000, "g", TopicPartition("orders", 1))] = PendingOffset(
        2, CommittedOffset(43, -1, "", T0 + 2, -1, 6)
    ).to_value()
    return records


def test_every_kind_of_record_encodes_as_pinned() -> None:
    built = built_records()
    assert set(built) == set(PINNED)
    for key, value in built.items():
        assert _record(key, value) == PINNED[key], key


def test_a_coordinator_opens_a_state_log_of_pinned_records(tmp_path: Path) -> None:
    store = StreamStore.open(tmp_path / "node", f"file://{tmp_path / 'bucket'}", FAST_STORE)
    coordinator = None
    try:
        stream_id = store.create_stream()
        store.open_stream(stream_id, 0)
        for payload in PINNED.values():
            offset = store.next_offset(stream_id)
            store.submit(stream_id, offset, offset, payload).result(10)
        coordinator = GroupCoordinator(
            StateLog.open(store, stream_id),
            partition_count=lambda topic: 4 if topic == "orders" else None,
            clock=ManualClock(time_ms=T0 + 10),
            topics=lambda: {"orders": TopicInfo(ORDERS_ID, 4)},
        )
        (classic,) = coordinator.describe_groups(["g"])
        assert (classic.protocol_type, classic.protocol_name, classic.state) == (
            "consumer",
            "range",
            "Stable",
        )
        assert [(m.member_id, m.metadata, m.assignment) for m in classic.members] == [
            ("m1", b"meta", b"assign")
        ]
        stored_configs = {e.name: e.value for e in coordinator.describe_group_configs("g")}
        assert stored_configs == {SESSION: "3000", INTERVAL: "900"}
        (consumer,) = coordinator.consumer_group_describe(["cg"])
        assert (consumer.error, consumer.group_epoch, consumer.assignment_epoch) == (0, 1, 1)
        (member,) = consumer.members
        assert (member.member_id, member.instance_id, member.member_epoch) == (
            "member-1",
            "i-1",
            1,
        )
        orders = [TopicPartition("orders", p) for p in (0, 1)]
        assert coordinator.fetch_offsets("g", orders) == {
            orders[0]: (OffsetAndMetadata(42, 7, "md", T0 + 1), 0),
            orders[1]: (None, 0),
        }
        assert coordinator.fetch_offsets("g", orders, require_stable=True)[orders[1]][1] != 0
        coordinator.complete_transaction(1000, True).result(10)
        assert coordinator.fetch_offsets("g", orders)[orders[1]] == (
            OffsetAndMetadata(43, -1, "", T0 + 2),
            0,
        )
    finally:
        if coordinator is not None:
            coordinator.close()
        store.close()


# -- any record, through msgpack ----------------------------------------------------------

int64s = st.integers(-(2**63), 2**63 - 1)
int32s = st.integers(-(2**31), 2**31 - 1)
names = st.text(max_size=8)
optional_names = st.none() | names
topic_ids = st.binary(min_size=16, max_size=16)
partition_sets = st.dictionaries(
    topic_ids, st.frozensets(st.integers(0, 2**31 - 1), max_size=4), max_size=3
)
partitions = st.builds(TopicPartition, names, st.integers(0, 2**31 - 1))
committed_offsets = st.builds(CommittedOffset, int64s, int32s, names, int64s, int64s, int64s)
classic_groups = st.builds(
    StoredGroup,
    optional_names,
    int32s,
    optional_names,
    optional_names,
    int64s,
    st.lists(
        st.builds(
            StoredMember,
            names,
            optional_names,
            names,
            names,
            int32s,
            int32s,
            st.binary(max_size=8),
            st.binary(max_size=8),
        ),
        max_size=3,
    ),
)
consumer_groups = st.builds(
    StoredConsumerGroup,
    int32s,
    int32s,
    st.lists(st.tuples(names, topic_ids, st.integers(0, 2**31 - 1)), max_size=3),
    int64s,
)
group_configs = st.builds(StoredGroupConfig, st.dictionaries(names, names, max_size=3))
consumer_members = st.builds(
    StoredConsumerMember,
    optional_names,
    optional_names,
    names,
    names,
    st.lists(names, max_size=3).map(tuple),
    optional_names,
    optional_names,
    int32s,
    int32s,
    int32s,
    st.sampled_from(["stable", "unrevoked_partitions", "unreleased_partitions"]),
    partition_sets,
    partition_sets,
    partition_sets,
    st.none()
    | st.tuples(int32s, st.lists(st.tuples(names, st.binary(max_size=8)), min_size=1, max_size=2)),
)


def _through_msgpack(records: dict[Hashable, Any]) -> list[tuple[Hashable, Any]]:
    """The records as a state log reads them back: msgpack gives lists for
    tuples, and the log makes keys tuples again."""
    raw = msgpack.unpackb(
        msgpack.packb([[k, v] for k, v in records.items()], use_bin_type=True),
        raw=False,
        strict_map_key=False,
    )
    return [(tuple(key), value) for key, value in raw]


@given(
    st.dictionaries(names, classic_groups, max_size=2),
    st.dictionaries(st.tuples(names, partitions), committed_offsets, max_size=3),
    st.dictionaries(
        st.tuples(int64s, names, partitions),
        st.builds(PendingOffset, st.integers(-(2**15), 2**15 - 1), committed_offsets),
        max_size=3,
    ),
    st.dictionaries(names, consumer_groups, max_size=2),
    st.dictionaries(st.tuples(names, names), consumer_members, max_size=3),
    st.dictionaries(names, group_configs, max_size=2),
)
def test_every_record_reads_back_as_written(
    classic: dict[str, StoredGroup],
    offsets: dict[tuple[str, TopicPartition], CommittedOffset],
    pending: dict[tuple[int, str, TopicPartition], PendingOffset],
    consumer: dict[str, StoredConsumerGroup],
    members: dict[tuple[str, str], StoredConsumerMember],
    configs: dict[str, StoredGroupConfig],
) -> None:
    records: dict[Hashable, Any] = {}
    records.update({classic_group_key(g): v.to_value() for g, v in classic.items()})
    records.update({offset_key(g, tp): v.to_value() for (g, tp), v in offsets.items()})
    records.update({txn_key(p, g, tp): v.to_value() for (p, g, tp), v in pending.items()})
    records.update({consumer_group_key(g): v.to_value() for g, v in consumer.items()})
    records.update({consumer_member_key(g, m): v.to_value() for (g, m), v in members.items()})
    records.update({group_config_key(g): v.to_value() for g, v in configs.items()})
    state = read_state(_through_msgpack(records))
    assert state.classic_groups == classic
    assert sorted(state.offsets) == sorted((g, tp, v) for (g, tp), v in offsets.items())
    assert sorted(state.pending) == sorted((p, g, tp, v) for (p, g, tp), v in pending.items())
    assert state.consumer_groups == consumer
    assert {(g, m): v for g, of in state.consumer_members.items() for m, v in of.items()} == (
        members
    )
    assert state.completed == []
    assert state.group_configs == configs


def test_completed_and_unknown_records_are_told_apart() -> None:
    done = txn_key(7, "g", TopicPartition("t", 0))
    state = read_state([(done, None), (("later_kind", "g"), {"v": 9})])
    assert state == StoredState({}, [], [], {}, {}, [done], {})
