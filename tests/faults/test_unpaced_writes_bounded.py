"""Writes that never wait for room (state records, checkpoints, markers:
their writers hold locks the server's event loop takes) are still
bounded through an object-store outage: past ``max_unuploaded_bytes``
plus ``unpaced_headroom_bytes`` the store refuses them, as Kafka's
coordinator refuses a write its log cannot take, and a client looping
on them cannot grow the WAL and the log cache without end."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import engine
from engine.acl_bindings import AclBinding
from engine.catalog import SNAPSHOT_EVERY
from engine.engine import Engine
from engine.errors import ConcurrentTransactions, CoordinatorNotAvailable, EngineError
from engine.groups import LeaveResult
from engine.groups.records import read_state
from engine.protocol.kafka_code import KafkaCode
from engine.transactions.metadata import TxnState
from engine.types import OffsetAndMetadata, TopicPartition
from s3stream.store import LocalStore
from tests.engine.test_transactions import values
from tests.faults.outages import engine_through_an_outage, filled_past
from tests.s3stream.faults import FaultyStore

TIMEOUT = 30.0
BOUND = 256 * 1024
HEADROOM = 128 * 1024
_SMALL = engine.EngineConfig.small()
CONFIG = replace(
    _SMALL,
    store=replace(
        _SMALL.store,
        max_unuploaded_bytes=BOUND,
        unpaced_headroom_bytes=HEADROOM,
        upload_bytes=64 * 1024,
        upload_interval_s=0.05,
    ),
)


@pytest.fixture
def down(tmp_path: Path) -> Iterator[tuple[Engine, FaultyStore]]:
    """An engine whose object store takes no uploads, filled past the
    bound by a producer now waiting for room."""
    with engine_through_an_outage(tmp_path, CONFIG, {"t": 1, "many": 32}, BOUND, TIMEOUT) as down:
        yield down


def _commit_past_the_headroom(e: Engine) -> None:
    """Group "g" commits offsets of 4 KiB of metadata, through an outage,
    until the group log refuses one (COORDINATOR_NOT_AVAILABLE): the log's
    headroom is then used up."""
    tp = TopicPartition("t", 0)
    for offset in range(4 * HEADROOM // 4096):
        answer = e.groups.commit_offsets(
            "g", -1, "", None, {tp: OffsetAndMetadata(offset, -1, "m" * 4096)}
        ).result(TIMEOUT)
        if answer[tp] is KafkaCode.COORDINATOR_NOT_AVAILABLE:
            return
    pytest.fail("no commit was refused past the headroom")


def test_offset_commits_in_a_loop_through_an_outage_stop_at_the_headroom(
    down: tuple[Engine, FaultyStore],
) -> None:
    e, faulty = down
    metadata = "m" * 4096  # offset.metadata.max.bytes, Kafka's default
    tp = TopicPartition("t", 0)
    codes: list[KafkaCode] = []
    for offset in range(4 * HEADROOM // len(metadata)):
        answer = e.groups.commit_offsets(
            "g", -1, "", None, {tp: OffsetAndMetadata(offset, -1, metadata)}
        ).result(TIMEOUT)
        codes.append(answer[tp])
        assert e.store.log_cache_usage().unuploaded_bytes <= BOUND + HEADROOM + 2 * 16384 + 8192
    # The first ones were taken (the store is down, the WAL is not), the
    # rest refused with COORDINATOR_NOT_AVAILABLE, Kafka's answer for a
    # write its log could not take in time, which clients retry; the
    # coordinator kept answering and holds the last commit taken.
    assert codes[0] is KafkaCode.NONE
    assert codes[-1] is KafkaCode.COORDINATOR_NOT_AVAILABLE
    accepted = codes.index(KafkaCode.COORDINATOR_NOT_AVAILABLE)
    assert set(codes[accepted:]) == {KafkaCode.COORDINATOR_NOT_AVAILABLE}
    committed = e.groups.fetch_offsets("g", [tp])[tp][0]
    assert committed is not None and committed.offset == accepted - 1

    faulty.heal()  # uploads resume: the retried commit is taken
    deadline = time.monotonic() + TIMEOUT
    while True:
        answer = e.groups.commit_offsets("g", -1, "", None, {tp: OffsetAndMetadata(10_000)})
        if answer.result(TIMEOUT)[tp] is KafkaCode.NONE:
            break
        assert time.monotonic() < deadline, "a commit was never taken after the store healed"
        time.sleep(0.05)
    committed = e.groups.fetch_offsets("g", [tp])[tp][0]
    assert committed is not None and committed.offset == 10_000


def test_aborted_transactions_in_a_loop_through_an_outage_stop_at_the_headroom(
    down: tuple[Engine, FaultyStore],
) -> None:
    """Each abort writes state records and a marker to every partition the
    transaction added, none of them paced: past the headroom the next
    transaction is refused, COORDINATOR_NOT_AVAILABLE when its own state
    record is refused, CONCURRENT_TRANSACTIONS when the abort before it was
    decided and its markers are being written again (docs/design/0108), and
    one already decided is completed once the store takes uploads again."""
    e, faulty = down
    partitions = [TopicPartition("many", index) for index in range(32)]
    txns = e.transactions
    producer_id, epoch = txns.init_producer_id("tx", 60_000).result(TIMEOUT)
    refused: BaseException | None = None
    for _ in range(4 * HEADROOM // (32 * 70)):
        try:
            txns.add_partitions("tx", producer_id, epoch, partitions).result(TIMEOUT)
            txns.end_transaction("tx", producer_id, epoch, commit=False).result(TIMEOUT)
        except EngineError as error:
            refused = error
            break
        finally:
            unuploaded = e.store.log_cache_usage().unuploaded_bytes
            assert unuploaded <= BOUND + HEADROOM + 2 * 16384 + 8192
    assert isinstance(refused, CoordinatorNotAvailable | ConcurrentTransactions), refused

    faulty.heal()
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            txns.add_partitions("tx", producer_id, epoch, partitions).result(TIMEOUT)
            txns.end_transaction("tx", producer_id, epoch, commit=False).result(TIMEOUT)
            break
        except CoordinatorNotAvailable:  # the transaction refused before is still completing
            assert time.monotonic() < deadline, "no transaction ended after the store healed"
            time.sleep(0.05)
        except ConcurrentTransactions:
            assert time.monotonic() < deadline, "no transaction ended after the store healed"
            time.sleep(0.05)
    assert txns.describe("tx").state.name == "COMPLETE_ABORT"


def test_a_leave_refused_past_the_headroom_is_answered_coordinator_not_available(
    down: tuple[Engine, FaultyStore],
) -> None:
    """A LeaveGroup is answered after its write (docs/design/0098): the last
    member's, whose Empty record the store refuses for room, is answered
    COORDINATOR_NOT_AVAILABLE, as the commits beside it are; the group is
    Empty all the same, its member gone, as Kafka's stays (0109), and the
    Empty record is written again once the store heals."""
    e, faulty = down
    # A session of minutes: the member stays in the group through the
    # outage and the retries however slowly a loaded machine runs them.
    joined = e.groups.join_group(
        "c", "", None, "consumer", [("range", b"m")], 300_000, 5_000, require_known_member_id=False
    ).result(TIMEOUT)
    assert joined.error is KafkaCode.NONE
    synced = e.groups.sync_group(
        "c", joined.generation_id, joined.member_id, None, "consumer", "range",
        {joined.member_id: b"assigned"},
    ).result(TIMEOUT)  # fmt: skip
    assert synced.error is KafkaCode.NONE
    _commit_past_the_headroom(e)

    left = e.groups.leave_group("c", [(joined.member_id, None)]).result(TIMEOUT)
    assert left == LeaveResult(KafkaCode.COORDINATOR_NOT_AVAILABLE, [])
    (described,) = e.groups.describe_groups(["c"])
    assert (described.state, described.members) == ("Empty", [])

    def stored() -> tuple[int, list[str]]:
        group = read_state(e.groups._run.state_log.items()).classic_groups["c"]
        return group.generation_id, [m.member_id for m in group.members]

    assert stored() == (joined.generation_id, [joined.member_id])  # the record refused
    faulty.heal()
    deadline = time.monotonic() + TIMEOUT
    while stored() != (joined.generation_id + 1, []):
        assert time.monotonic() < deadline, (
            "the Empty record was never written after the store healed"
        )
        time.sleep(0.05)
    (described,) = e.groups.describe_groups(["c"])
    assert (described.state, described.members) == ("Empty", [])


def test_the_catalogs_snapshot_through_an_outage_never_waits_under_its_lock(
    down: tuple[Engine, FaultyStore],
) -> None:
    """Catalog writes past the bound (ACLs added and removed, each a record)
    reach a snapshot, written under the catalog's lock, which a producer id
    taken on the event loop waits for too: the snapshot is written without
    waiting for room (the writes returned with the store still down, the
    catalog's stream trimmed to it), as the writes before it were."""
    e, _ = down
    binding = AclBinding(2, "t", 3, "User:alice", "*", 3, 3)  # topic, literal, allow read
    stream = e.catalog.stream_id
    start = e.store.start_offset(stream)
    done = threading.Event()

    def write() -> None:
        for _ in range(2 * SNAPSHOT_EVERY):
            e.catalog.add_acls([binding])
            e.catalog.remove_acls([binding])
        done.set()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    assert done.wait(TIMEOUT / 3), "a catalog write waited for room under the catalog's lock"
    assert e.store.start_offset(stream) > start, "no snapshot was written"
    assert binding not in e.catalog.state.acls
    assert e.store.log_cache_usage().unuploaded_bytes > BOUND  # still down, still past the bound


def test_a_partitions_checkpoint_through_an_outage_never_waits_under_its_lock(
    tmp_path: Path,
) -> None:
    """A checkpoint is written under the partition's lock, which Fetch takes
    on the event loop: past the bound it is written without waiting for
    room (the call returns with the store still down, the lock free)."""
    faulty = FaultyStore(LocalStore(tmp_path / "objects"))
    # No background checkpoint: the test's own is the one to write.
    e = engine.open(tmp_path / "node", faulty, replace(CONFIG, checkpoint_interval_s=3600.0))
    try:
        e.create_topic("t", 1)
        faulty.fail("put")
        filling = filled_past(e, BOUND, TIMEOUT)
        leader = e.partition("t", 0)
        written: list[object] = []
        checkpointing = threading.Thread(
            target=lambda: written.append(leader.checkpoint()), daemon=True
        )
        checkpointing.start()
        checkpointing.join(TIMEOUT / 3)
        assert not checkpointing.is_alive(), "the checkpoint waited for room under the lock"
        assert written and written[0] is not None, "nothing was checkpointed"
        assert leader.lock.acquire(timeout=TIMEOUT / 3)
        leader.lock.release()
        assert e.store.log_cache_usage().unuploaded_bytes > BOUND  # still down, still past it
        faulty.heal()
        filling.join(TIMEOUT)
        assert not filling.is_alive()
        checkpointing.join(TIMEOUT)
    finally:
        faulty.heal()
        e.close()


def test_an_embedded_member_refused_past_the_headroom_polls_nothing_then_joins(
    down: tuple[Engine, FaultyStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An embedded consumer whose group's writes the store refuses past
    its headroom (a real outage, no refusal faked): its join or sync is
    answered COORDINATOR_NOT_AVAILABLE, poll returns nothing and raises
    nothing while the join is sent again after a backoff (a few times a
    second, not in a loop), and once uploads resume the member joins and
    reads; a close during the backoff returns at once."""
    e, faulty = down
    _commit_past_the_headroom(e)
    joins = 0
    join_group = e.groups.join_group

    def counted(*args: object, **kwargs: object) -> object:
        nonlocal joins
        joins += 1
        return join_group(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(e.groups, "join_group", counted)
    member = {"group_id": "c", "auto_offset_reset": "earliest", "enable_auto_commit": False}
    closed_early = e.consumer("t", **member)
    assert closed_early.poll(timeout=0.3) == []
    started = time.monotonic()
    closed_early.close()
    assert time.monotonic() - started < 5.0  # not held by the backoff
    consumer = e.consumer("t", **member)
    try:
        started, joins = time.monotonic(), 0
        while time.monotonic() - started < 2.0:
            assert consumer.poll(timeout=0.1) == []
        assert consumer.assignment() == set()
        # 100 ms doubling to 1 s: about four in two seconds, a handful at most.
        assert 2 <= joins <= 8, f"{joins} joins in two seconds"
        faulty.heal()
        deadline = time.monotonic() + TIMEOUT
        while not consumer.poll(timeout=0.1):
            assert time.monotonic() < deadline, "the member never joined once the store healed"
        assert consumer.assignment() == {TopicPartition("t", 0)}
    finally:
        consumer.close()


def test_a_commit_whose_records_are_not_written_within_its_timeout_commits_nothing(
    down: tuple[Engine, FaultyStore],
) -> None:
    """An embedded transactional producer's record waits for room through
    the outage while the transaction's state records and markers, which
    never wait, still fit in the headroom: commit_transaction with a
    timeout the record outlasts raises TimeoutError and commits nothing
    (as Kafka's producer times out its commitTransaction), not a
    transaction without the record; called again once the store heals it
    commits the record."""
    e, faulty = down
    producer = e.producer(transactional_id="app")
    try:
        producer.init_transactions(TIMEOUT)
        producer.begin_transaction()
        sent = producer.send("many", b"late", partition=0)
        with pytest.raises(TimeoutError):
            producer.commit_transaction(0.5)
        assert not sent.done()
        assert e.transactions.describe("app").state is not TxnState.COMPLETE_COMMIT
        faulty.heal()
        producer.commit_transaction(TIMEOUT)
        assert sent.result(TIMEOUT).offset == 0
    finally:
        faulty.heal()  # the sender waits for room: healed, it can close
        producer.close()
    assert e.transactions.describe("app").state is TxnState.COMPLETE_COMMIT
    assert values(e, "many", "read_committed") == [b"late"]
