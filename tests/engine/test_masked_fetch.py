"""Masked fetches (engine/masking/batches.py and the embedded consumer):
a re-encoded batch keeps every header field of the stored one, on the C
extension and on the pure twin alike (the test runs both itself); control
batches and null values pass as stored; the embedded consumer reads masked
unless its principal holds unmask; hashes survive a restart; transactions
and compression behave as unmasked."""

from __future__ import annotations

import contextlib
import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import native
from engine.acl_bindings import AclBinding, AclPermission, PatternType
from engine.authorization import AclOperation, AuthorizationConfig, ResourceType
from engine.client.consumer import Consumer
from engine.masking.batches import mask_batch, mask_fetch
from engine.masking.documents import MARKER_JSON, Masking, hash_value
from engine.masking.rules import parse_rules
from engine.partition import PartitionFetch
from engine.types import TopicPartition
from native import _pure
from native.records import BatchHeader, Compression, RecordSpec

RULES = json.dumps(
    [
        {"path": "/customer/email", "action": "redact"},
        {"path": "/customer/name", "action": "hash"},
        {"path": "/card", "action": "drop"},
        {"path": "/user", "action": "hash", "in": "key"},
        {"path": "", "action": "redact", "in": "header:token"},
    ]
)
KEY = b"s" * 32
MASKING = Masking.of(parse_rules(RULES), KEY)
_NATIVE_API = ("scan_batches", "decode_records", "encode_batch", "rewrite_batch")


def _implementations() -> list[ModuleType]:
    found = [_pure]
    with contextlib.suppress(ImportError):
        found.append(importlib.import_module("native._cnative"))
    return found


@contextlib.contextmanager
def _running_on(impl: ModuleType) -> Iterator[None]:
    """native/'s batch functions from ``impl`` while the block runs."""
    saved = {name: getattr(native, name) for name in _NATIVE_API}
    try:
        for name in _NATIVE_API:
            setattr(native, name, getattr(impl, name))
        yield
    finally:
        for name, function in saved.items():
            setattr(native, name, function)


def _value(i: int) -> bytes:
    document = {"customer": {"email": f"u{i}@example.com", "name": f"N{i % 3}"}, "card": "4111"}
    return json.dumps(document).encode()


def _same_header(stored: BatchHeader, masked: BatchHeader) -> None:
    fields = set(BatchHeader._fields) - {"crc", "batch_length"}
    assert {f: getattr(masked, f) for f in fields} == {f: getattr(stored, f) for f in fields}


@st.composite
def stored_batches(draw: st.DrawFn) -> bytes:
    """A batch as a partition stores it: any codec, producer fields,
    transactional or not, gaps in its offsets (compaction), and its
    timestamps of either type."""
    count = draw(st.integers(1, 6))
    gaps = draw(st.lists(st.integers(1, 3), min_size=count, max_size=count))
    deltas = [sum(gaps[: i + 1]) - gaps[0] for i in range(count)]
    base_timestamp = draw(st.integers(0, 2**41))
    records = [
        RecordSpec(
            base_timestamp + draw(st.integers(0, 10_000)),
            draw(st.sampled_from([None, b'{"user": "ann"}', b"raw key"])),
            draw(st.sampled_from([None, _value(i), b"not json"])),
            (("token", b"secret"), ("trace", b"t-1")) if i % 2 else (),
        )
        for i in range(count)
    ]
    batch = bytearray(
        _pure.encode_batch(
            records,
            base_offset=draw(st.integers(0, 2**40)),
            compression=draw(st.sampled_from(list(Compression))),
            producer_id=draw(st.integers(-1, 2**40)),
            producer_epoch=draw(st.integers(-1, 2**15 - 1)),
            base_sequence=draw(st.integers(-1, 2**30)),
            is_transactional=draw(st.booleans()),
            partition_leader_epoch=draw(st.integers(-1, 100)),
            base_timestamp=base_timestamp,
            offset_deltas=deltas,
            last_offset_delta=deltas[-1] + draw(st.integers(0, 2)),
        )
    )
    if draw(st.booleans()):  # LogAppendTime: the broker stamps the batch's max timestamp
        header = _pure.scan_batches(batch)[0]
        _pure.rewrite_batch(batch, 0, header.base_offset, log_append_time=base_timestamp + 20_000)
    return bytes(batch)


@settings(max_examples=60, deadline=None)
@given(stored_batches())
def test_a_masked_batch_keeps_the_stored_batch_fields_on_c_and_python(stored: bytes) -> None:
    outputs = []
    for impl in _implementations():
        with _running_on(impl):
            masked = bytes(mask_batch(stored, MASKING, native.MAX_INFLATED))
        outputs.append(masked)
        (before,), (after,) = (
            impl.scan_batches(stored),
            impl.validate_batches(masked, from_client=False),
        )
        _same_header(before, after)
        clear, hidden = impl.decode_records(stored), impl.decode_records(masked)
        assert [(r.offset, r.timestamp) for r in hidden] == [(r.offset, r.timestamp) for r in clear]
        for shown, record in zip(hidden, clear, strict=True):
            assert (shown.timestamp, shown.key, shown.value, shown.headers) == tuple(
                MASKING.record(record)
            )
            if record.value is not None:
                assert b"example.com" not in shown.value and b"4111" not in shown.value
            assert b"secret" not in repr(shown.headers).encode()
            assert ("trace", b"t-1") in shown.headers or not record.headers
    assert len(set(outputs)) == 1, "the C and the pure twin mask to the same bytes"


def test_control_batches_pass_as_stored() -> None:
    marker = _pure.encode_batch(
        [RecordSpec(5, b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00\x00")],
        base_offset=9,
        producer_id=7,
        producer_epoch=1,
        is_transactional=True,
        is_control=True,
    )
    data = _pure.encode_batch([RecordSpec(5, None, _value(1))], base_offset=8) + marker
    masked = bytes(mask_batch(data, MASKING, native.MAX_INFLATED))
    assert masked.endswith(marker)
    assert b"example.com" not in masked


def test_a_masked_fetch_that_grows_past_its_limit_leaves_later_batches_for_the_next() -> None:
    batches = [
        _pure.encode_batch([RecordSpec(0, None, b'{"customer": {"name": "a"}}')], base_offset=i)
        for i in range(3)
    ]
    fetched = PartitionFetch(list(batches), 3, 3, 0)
    grown = len(mask_batch(batches[0], MASKING, native.MAX_INFLATED))
    assert grown > len(batches[0])  # a hash is longer than "a"
    masked = mask_fetch(fetched, MASKING, limit=sum(len(b) for b in batches))
    assert len(masked.records) == 2 and masked.next_offset == 2
    assert len(mask_fetch(fetched, MASKING, limit=1).records) == 1  # the first goes regardless
    assert len(mask_fetch(fetched, MASKING, limit=None).records) == 3


@settings(max_examples=60, deadline=None)
@given(
    runs=st.lists(
        st.lists(st.sampled_from(["a", "bb", "ccc"]), min_size=1, max_size=5),
        min_size=1,
        max_size=4,
    ),
    limit=st.integers(1, 2000),
)
def test_a_masked_fetch_sends_whole_batches_within_its_limit_across_appends(
    runs: list[list[str]], limit: int
) -> None:
    """Stored appends of several batches each, grown by masking: whole
    batches up to ``limit``, the first whatever its size, and the next
    fetch starts at the first batch left out, inside an append or not."""
    entries, offset = [], 0
    for names in runs:
        batches = []
        for name in names:
            value = json.dumps({"customer": {"name": name}}).encode()
            batches.append(_pure.encode_batch([RecordSpec(0, None, value)], base_offset=offset))
            offset += 1
        entries.append(b"".join(batches))
    fetched = PartitionFetch(entries, offset, offset, 0)
    masked = mask_fetch(fetched, MASKING, limit=limit)
    sent = [h for batch in masked.records for h in native.scan_batches(batch)]
    size = sum(h.size for h in sent)
    assert sent, "the first batch goes whatever its size"
    assert len(sent) == 1 or size <= limit
    assert [h.base_offset for h in sent] == list(range(len(sent)))
    assert masked.next_offset == (offset if len(sent) == offset else len(sent))
    whole = mask_fetch(fetched, MASKING, limit=None)
    assert b"".join(map(bytes, masked.records)) == b"".join(map(bytes, whole.records))[:size]


# -- the embedded consumer ----------------------------------------------------------------


def _read_all(consumer: Consumer, count: int) -> list[Any]:
    records: list[Any] = []
    for _ in range(50):
        records += consumer.poll(timeout=0.2)
        if len(records) >= count:
            break
    return records


def _consumer(e: Any, **options: Any) -> Consumer:
    consumer: Consumer = e.consumer(**options)
    consumer.assign([TopicPartition("chats", 0)])
    consumer.seek(TopicPartition("chats", 0), 0)
    return consumer


def test_the_embedded_consumer_reads_masked_unless_its_principal_may_unmask(
    engine_factory: Any, tmp_path: Path
) -> None:
    e = engine_factory()
    e.create_topic("chats", 1, {"tidelog.masking.rules": RULES})
    with e.producer(compression="zstd") as producer:
        for i in range(4):
            producer.send("chats", _value(i), key=b'{"user": "ann"}', headers=[("token", b"t")])
        producer.send("chats", b"plain text")
        producer.send("chats", None, key=b"tombstone")
        producer.flush(30)
    stored = e.fetch("chats", 0, 0).records
    masked = _read_all(_consumer(e), 6)
    assert [r.offset for r in masked] == list(range(6))
    topic_key = e.catalog.state.masking_keys["chats"]
    first = json.loads(masked[0].value)
    assert first == {"customer": {"email": "***", "name": hash_value(topic_key, "N0")}}
    assert masked[0].headers == (("token", b'"***"'),)
    assert json.loads(masked[0].key) == {"user": hash_value(topic_key, "ann")}
    assert masked[4].value == MARKER_JSON  # not JSON: masked whole
    assert masked[5].value is None and masked[5].key == MARKER_JSON
    assert json.loads(masked[3].value)["customer"]["name"] == first["customer"]["name"]

    e.grant_unmask("chats", "User:auditor")
    clear = _read_all(_consumer(e, principal="User:auditor"), 6)
    assert [r.value for r in clear[:5]] == [*(_value(i) for i in range(4)), b"plain text"]
    assert e.fetch("chats", 0, 0).records == stored  # masking stored nothing
    assert _read_all(_consumer(e, principal="User:other"), 6)[0].value == masked[0].value
    e.revoke_unmask("chats", "User:auditor")
    assert _read_all(_consumer(e, principal="User:auditor"), 6)[0].value == masked[0].value

    e.close()
    reopened = engine_factory(tmp_path / "node")
    again = _read_all(_consumer(reopened), 6)
    assert [r.value for r in again] == [r.value for r in masked]  # the key is the catalog's


def test_a_super_user_of_the_engines_authorization_reads_in_clear(
    engine_factory: Any,
) -> None:
    authorization = AuthorizationConfig(super_users=("User:root",))
    e = engine_factory(authorization=authorization)
    e.create_topic("chats", 1, {"tidelog.masking.rules": RULES})
    with e.producer(principal="User:root") as producer:
        producer.send("chats", _value(0))
        producer.flush(30)
    assert _read_all(_consumer(e, principal="User:root"), 1)[0].value == _value(0)
    e.catalog.add_acls(
        [
            AclBinding(
                ResourceType.TOPIC,
                "chats",
                PatternType.LITERAL,
                "User:reader",
                "*",
                AclOperation.READ,
                AclPermission.ALLOW,
            )
        ]
    )
    masked = _read_all(_consumer(e, principal="User:reader"), 1)[0].value
    assert json.loads(masked)["customer"]["email"] == "***"


def test_read_committed_reads_masked_and_without_aborted_records(engine_factory: Any) -> None:
    e = engine_factory()
    e.create_topic("chats", 1, {"tidelog.masking.rules": RULES})
    with e.producer(transactional_id="agent") as producer:
        producer.init_transactions(30)
        producer.begin_transaction()
        producer.send("chats", _value(1)).result(30)
        producer.commit_transaction(30)
        producer.begin_transaction()
        producer.send("chats", _value(2)).result(30)
        producer.abort_transaction(30)
        producer.begin_transaction()
        producer.send("chats", _value(3)).result(30)
        producer.commit_transaction(30)
    records = _read_all(_consumer(e, isolation_level="read_committed"), 2)
    assert [r.offset for r in records] == [0, 4]
    assert [json.loads(r.value)["customer"]["email"] for r in records] == ["***", "***"]


def test_a_batch_that_cannot_be_decoded_within_the_limit_is_not_sent_in_clear(
    engine_factory: Any,
) -> None:
    e = engine_factory()
    e.create_topic("chats", 1, {"tidelog.masking.rules": RULES})
    big = json.dumps({"customer": {"email": "ann@example.com"}, "pad": "0" * (2 << 20)})
    with e.producer(compression="gzip") as producer:
        producer.send("chats", big.encode()).result(30)
    # a lower limit afterwards: the stored batch now inflates past what may be decoded
    e.alter_configs("chats", {"max.message.bytes": "1000"})
    fetched = e.fetch("chats", 0, 0)
    with pytest.raises(native.InflationLimitExceeded):
        e.masked_fetch("chats", fetched, "User:evaluator")
    e.grant_unmask("chats", "User:auditor")
    assert e.masked_fetch("chats", fetched, "User:auditor") is fetched
