"""Transactions v2 (KIP-890 part 2) over a real socket with the raw client,
as a Kafka 4.0 client drives them once ApiVersions finalizes
transaction.version 2: Produce v12 and TxnOffsetCommit v5 with no explicit
adds, EndTxn v5 answering the bumped epoch, a late write at the epoch
before refused, a retry answered again, the aborted transaction index
read_committed readers see, and the implicit adds' refusals and order
(docs/design/0076)."""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

import engine
import native
from engine.errors import ConcurrentTransactions
from engine.protocol.apis import ApiKey, request_schema, response_schema
from engine.protocol.kafka_code import KafkaCode
from engine.server.config import ServerConfig
from engine.transactions.config import TransactionConfig
from engine.transactions.coordinator import TransactionCoordinator
from engine.transactions.metadata import MAX_EPOCH, TxnState
from tests import docspec
from tests.engine.test_transactions import values
from tests.engine.test_transactions_v2 import at_epoch
from tests.engine.transaction_faults import hold_markers
from tests.engine.txn_state_faults import RefusedMarkers, io_error
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build, fetch_from_start

TIMEOUT = 30.0


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[engine.Engine, InProcessServer]]:
    with engine.open(tmp_path / "node") as opened:
        opened.create_topic("in", 1)
        server = InProcessServer(opened)
        try:
            yield opened, server
        finally:
            server.stop()


def ask(server: InProcessServer, key: ApiKey, version: int, **values: Any) -> Any:
    with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
        return wire.request(build(request_schema(key, version), **values))


def features(answer: Any) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
    supported = [(f.name, f.min_version, f.max_version) for f in answer.supported_features]
    finalized = [
        (f.name, f.min_version_level, f.max_version_level) for f in answer.finalized_features
    ]
    return supported, finalized


@pytest.mark.parametrize("version", [3, 4])
def test_api_versions_finalizes_transaction_version_2_with_the_versions_it_needs(
    node: tuple[engine.Engine, InProcessServer], version: int
) -> None:
    answer = ask(node[1], ApiKey.API_VERSIONS, version, client_software_name="t")
    assert answer.error_code == KafkaCode.NONE
    # Below v4 a feature supported from level 0 is left out, as Kafka leaves
    # it out (KAFKA-17492): a Java client before 3.9 refuses a range that
    # starts at 0, and with it the whole answer. The finalized level is told.
    supported = [("transaction.version", 0, 2)] if version >= 4 else []
    assert features(answer) == (supported, [("transaction.version", 2, 2)])
    assert answer.finalized_features_epoch >= 0  # above a client's "none seen"
    highest = {k.api_key: k.max_version for k in answer.api_keys}
    assert highest[ApiKey.PRODUCE] == 12
    assert highest[ApiKey.END_TXN] == 5
    assert highest[ApiKey.TXN_OFFSET_COMMIT] == 5
    assert highest[ApiKey.INIT_PRODUCER_ID] == 5
    assert highest[ApiKey.ADD_PARTITIONS_TO_TXN] == 5


def init(server: InProcessServer, transactional_id: str = "pipeline") -> tuple[int, int]:
    started = ask(
        server,
        ApiKey.INIT_PRODUCER_ID,
        5,
        transactional_id=transactional_id,
        transaction_timeout=datetime.timedelta(seconds=60),
        producer_id=-1,
        producer_epoch=-1,
    )
    assert started.error_code == KafkaCode.NONE
    return started.producer_id, started.producer_epoch


def produce(
    server: InProcessServer,
    producer: tuple[int, int],
    sequence: int,
    value: bytes,
    version: int = 12,
    topic: str = "in",
) -> int:
    batch = native.encode_batch(
        [native.RecordSpec(0, None, value, ())],
        producer_id=producer[0],
        producer_epoch=producer[1],
        base_sequence=sequence,
        is_transactional=True,
    )
    answer = ask(
        server,
        ApiKey.PRODUCE,
        version,
        transactional_id="pipeline",
        acks=-1,
        timeout_ms=int(TIMEOUT * 1000),
        topic_data=[{"name": topic, "partition_data": [{"index": 0, "records": batch}]}],
    )
    code: int = answer.responses[0].partition_responses[0].error_code
    return code


def end(server: InProcessServer, producer: tuple[int, int], commit: bool, version: int = 5) -> Any:
    return ask(
        server,
        ApiKey.END_TXN,
        version,
        transactional_id="pipeline",
        producer_id=producer[0],
        producer_epoch=producer[1],
        committed=commit,
    )


def txn_offset_commit(server: InProcessServer, producer: tuple[int, int], offset: int) -> int:
    answer = ask(
        server,
        ApiKey.TXN_OFFSET_COMMIT,
        5,
        transactional_id="pipeline",
        group_id="readers",
        producer_id=producer[0],
        producer_epoch=producer[1],
        generation_id=-1,
        member_id="",
        topics=[
            {
                "name": "in",
                "partitions": [
                    {"partition_index": 0, "committed_offset": offset, "committed_leader_epoch": -1}
                ],
            }
        ],
    )
    code: int = answer.topics[0].partitions[0].error_code
    return code


def committed_offset(server: InProcessServer) -> int:
    answer = ask(
        server,
        ApiKey.OFFSET_FETCH,
        8,
        groups=[{"group_id": "readers", "topics": [{"name": "in", "partition_indexes": [0]}]}],
        require_stable=True,
    )
    offset: int = answer.groups[0].topics[0].partitions[0].committed_offset
    return offset


def read_committed(server: InProcessServer) -> Any:
    fetch = dataclasses.replace(fetch_from_start("in"), isolation_level=1)
    with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
        return wire.request(fetch).responses[0].partitions[0]


def test_a_transaction_with_implicit_adds_commits_and_bumps_the_epoch(
    node: tuple[engine.Engine, InProcessServer],
) -> None:
    opened, server = node
    producer_id, epoch = init(server)
    assert produce(server, (producer_id, epoch), 0, b"a") == KafkaCode.NONE
    described = opened.transactions.describe("pipeline")
    assert [(tp.topic, tp.partition) for tp in described.partitions] == [("in", 0)]
    assert txn_offset_commit(server, (producer_id, epoch), 1) == KafkaCode.NONE
    assert "readers" in opened.transactions.describe("pipeline").groups
    ended = end(server, (producer_id, epoch), True)
    assert (ended.error_code, ended.producer_id, ended.producer_epoch) == (
        KafkaCode.NONE,
        producer_id,
        epoch + 1,
    )
    assert committed_offset(server) == 1
    assert values(opened, "in", "read_committed") == [b"a"]
    # A retry of the end is answered the same, and writes nothing again.
    retried = end(server, (producer_id, epoch), True)
    assert (retried.error_code, retried.producer_id, retried.producer_epoch) == (
        KafkaCode.NONE,
        producer_id,
        epoch + 1,
    )
    assert opened.offsets("in", 0)[1] == 2  # the record and one marker


def test_a_late_write_at_the_epoch_before_the_commit_is_refused(
    node: tuple[engine.Engine, InProcessServer],
) -> None:
    """As from Kafka 4.0: the coordinator fences the add (PRODUCER_FENCED),
    which a Produce is answered as INVALID_PRODUCER_EPOCH; a v11 Produce
    meets the partition's own check with the same code."""
    opened, server = node
    producer_id, epoch = init(server)
    assert produce(server, (producer_id, epoch), 0, b"a") == KafkaCode.NONE
    assert end(server, (producer_id, epoch), True).error_code == KafkaCode.NONE
    for version in (11, 12):
        code = produce(server, (producer_id, epoch), 1, b"late", version)
        assert code == KafkaCode.INVALID_PRODUCER_EPOCH
    assert txn_offset_commit(server, (producer_id, epoch), 5) == KafkaCode.INVALID_PRODUCER_EPOCH
    assert opened.offsets("in", 0)[1] == 2
    # The bumped epoch starts its sequences again at 0.
    assert produce(server, (producer_id, epoch + 1), 0, b"b") == KafkaCode.NONE
    assert end(server, (producer_id, epoch + 1), True).producer_epoch == epoch + 2
    assert values(opened, "in", "read_committed") == [b"a", b"b"]


def test_an_aborted_v2_transaction_is_in_the_aborted_index_readers_get(
    node: tuple[engine.Engine, InProcessServer],
) -> None:
    opened, server = node
    producer_id, epoch = init(server)
    assert produce(server, (producer_id, epoch), 0, b"dropped") == KafkaCode.NONE
    aborted = end(server, (producer_id, epoch), False)
    assert (aborted.error_code, aborted.producer_epoch) == (KafkaCode.NONE, epoch + 1)
    assert produce(server, (producer_id, epoch + 1), 0, b"kept") == KafkaCode.NONE
    assert end(server, (producer_id, epoch + 1), True).error_code == KafkaCode.NONE
    partition = read_committed(server)
    assert [(a.producer_id, a.first_offset) for a in partition.aborted_transactions] == [
        (producer_id, 0)
    ]
    assert partition.last_stable_offset == partition.high_watermark == 4
    assert values(opened, "in", "read_committed") == [b"kept"]


def test_end_txn_v5_answers_no_producer_with_an_error(
    node: tuple[engine.Engine, InProcessServer],
) -> None:
    _, server = node
    producer_id, epoch = init(server)
    wrong = end(server, (producer_id + 1, epoch), True)
    assert (wrong.error_code, wrong.producer_id, wrong.producer_epoch) == (
        KafkaCode.INVALID_PRODUCER_ID_MAPPING,
        -1,
        -1,
    )
    nothing = end(server, (producer_id, epoch), True)  # a commit with nothing added
    assert (nothing.error_code, nothing.producer_id) == (KafkaCode.INVALID_TXN_STATE, -1)
    fenced = end(server, (producer_id, epoch - 1 if epoch else epoch + 1), False)
    assert fenced.error_code == KafkaCode.PRODUCER_FENCED


def test_end_txn_v4_keeps_the_epoch(node: tuple[engine.Engine, InProcessServer]) -> None:
    """A transactions v1 client (EndTxn v4 and the explicit adds) goes on
    with the epoch it has: nothing bumps it."""
    opened, server = node
    producer_id, epoch = init(server)
    added = ask(
        server,
        ApiKey.ADD_PARTITIONS_TO_TXN,
        3,
        v3_and_below_transactional_id="pipeline",
        v3_and_below_producer_id=producer_id,
        v3_and_below_producer_epoch=epoch,
        v3_and_below_topics=[{"name": "in", "partitions": [0]}],
    )
    assert added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code == 0
    assert produce(server, (producer_id, epoch), 0, b"a", version=11) == KafkaCode.NONE
    assert end(server, (producer_id, epoch), True, version=4).error_code == KafkaCode.NONE
    assert opened.transactions.describe("pipeline").producer_epoch == epoch
    markers = opened.partition("in", 0).describe_producers()
    assert [p.producer_epoch for p in markers] == [epoch]


def test_a_produce_v12_to_a_partition_that_does_not_exist_adds_nothing(
    node: tuple[engine.Engine, InProcessServer],
) -> None:
    opened, server = node
    producer_id, epoch = init(server)
    batch = native.encode_batch(
        [native.RecordSpec(0, None, b"x", ())],
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=0,
        is_transactional=True,
    )
    answer = ask(
        server,
        ApiKey.PRODUCE,
        12,
        transactional_id="pipeline",
        acks=-1,
        timeout_ms=int(TIMEOUT * 1000),
        topic_data=[{"name": "in", "partition_data": [{"index": 7, "records": batch}]}],
    )
    assert answer.responses[0].partition_responses[0].error_code == (
        KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
    )
    described = opened.transactions.describe("pipeline")
    assert (described.state, described.partitions) == (TxnState.EMPTY, frozenset())


def test_a_produce_v12_to_a_topic_it_creates_adds_the_new_partition(tmp_path: Path) -> None:
    """With auto-creation on, a Produce creates the unknown topics it names;
    under transactions v2 the new partition is then added to the
    transaction like any other, never answered TRANSACTION_ABORTABLE (which
    would cost the client its transaction) for a partition the request
    itself brought into being."""
    config = engine.EngineConfig(auto_create_topics=True)
    with engine.open(tmp_path / "node", config=config) as opened:
        server = InProcessServer(opened)
        try:
            producer = init(server)
            assert produce(server, producer, 0, b"a", topic="fresh") == KafkaCode.NONE
            described = opened.transactions.describe("pipeline")
            assert [(tp.topic, tp.partition) for tp in described.partitions] == [("fresh", 0)]
            assert end(server, producer, True).error_code == KafkaCode.NONE
            assert values(opened, "fresh", "read_committed") == [b"a"]
        finally:
            server.stop()


def test_a_produce_v12_adds_only_for_the_transactional_ids_own_producer(
    node: tuple[engine.Engine, InProcessServer],
) -> None:
    """A transactional batch of another id's producer, sent under this id,
    is refused with nothing added to either transaction; an idempotent
    batch sent under a transactional id is appended and begins none."""
    opened, server = node
    init(server)
    other = init(server, "other")
    assert produce(server, other, 0, b"foreign") == KafkaCode.INVALID_PRODUCER_ID_MAPPING
    idempotent = ask(
        server,
        ApiKey.INIT_PRODUCER_ID,
        5,
        transactional_id=None,
        transaction_timeout=datetime.timedelta(seconds=60),
        producer_id=-1,
        producer_epoch=-1,
    )
    batch = native.encode_batch(
        [native.RecordSpec(0, None, b"plain", ())],
        producer_id=idempotent.producer_id,
        producer_epoch=idempotent.producer_epoch,
        base_sequence=0,
    )
    answer = ask(
        server,
        ApiKey.PRODUCE,
        12,
        transactional_id="pipeline",
        acks=-1,
        timeout_ms=int(TIMEOUT * 1000),
        topic_data=[{"name": "in", "partition_data": [{"index": 0, "records": batch}]}],
    )
    assert answer.responses[0].partition_responses[0].error_code == KafkaCode.NONE
    for transactional_id in ("pipeline", "other"):
        described = opened.transactions.describe(transactional_id)
        assert (described.state, described.partitions) == (TxnState.EMPTY, frozenset())
    assert values(opened, "in", "read_committed") == [b"plain"]


def test_writes_meeting_a_transaction_being_completed_are_retried(
    node: tuple[engine.Engine, InProcessServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While an EndTxn v5's markers are written, the transaction's implicit
    adds are refused as Kafka 4 answers the coordinator's
    CONCURRENT_TRANSACTIONS: as it is to a Produce v12 (KAFKA-18662: a
    transactions v2 client retries it), COORDINATOR_NOT_AVAILABLE to a
    TxnOffsetCommit, both retriable; once complete, the bumped epoch
    writes."""
    opened, server = node
    producer_id, epoch = init(server)
    assert produce(server, (producer_id, epoch), 0, b"a") == KafkaCode.NONE
    released = hold_markers(monkeypatch, TIMEOUT)
    with Wire(server.bootstrap, timeout=TIMEOUT) as ending:
        sent = ending.send(
            build(
                request_schema(ApiKey.END_TXN, 5),
                transactional_id="pipeline",
                producer_id=producer_id,
                producer_epoch=epoch,
                committed=True,
            )
        )
        deadline = time.monotonic() + TIMEOUT
        while opened.transactions.describe("pipeline").state is not TxnState.PREPARE_COMMIT:
            assert time.monotonic() < deadline, "the end was never prepared"
            time.sleep(0.01)
        bumped = (producer_id, epoch + 1)
        assert produce(server, bumped, 0, b"b") == KafkaCode.CONCURRENT_TRANSACTIONS
        assert txn_offset_commit(server, bumped, 1) == KafkaCode.COORDINATOR_NOT_AVAILABLE
        released.set()
        answered, ended = ending.receive(response_schema(ApiKey.END_TXN, 5))
    assert (answered, ended.error_code, ended.producer_epoch) == (sent, KafkaCode.NONE, epoch + 1)
    assert produce(server, bumped, 0, b"b") == KafkaCode.NONE
    assert txn_offset_commit(server, bumped, 1) == KafkaCode.NONE
    assert end(server, bumped, True).error_code == KafkaCode.NONE
    assert values(opened, "in", "read_committed") == [b"a", b"b"]
    assert committed_offset(server) == 1


def test_a_produce_meeting_the_transaction_before_completing_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit immediately followed by the next transaction's first
    Produce v12 while the commit's markers are written: the Produce's add,
    refused CONCURRENT_TRANSACTIONS, is asked again on the server (Kafka 4,
    KAFKA-18654) while the event loop serves other requests, and once the
    commit completes within the window the Produce is answered NONE, with
    no CONCURRENT_TRANSACTIONS for the client to back off and retry. (The
    window is widened so that a slow machine cannot close it first.)"""
    config = engine.EngineConfig(
        transactions=TransactionConfig(add_partitions_to_txn_retry_backoff_max_ms=60_000)
    )
    with engine.open(tmp_path / "node", config=config) as opened:
        opened.create_topic("in", 1)
        server = InProcessServer(opened)
        try:
            producer_id, epoch = init(server)
            assert produce(server, (producer_id, epoch), 0, b"a") == KafkaCode.NONE
            released = hold_markers(monkeypatch, TIMEOUT)
            asks = count_adds(monkeypatch)
            with (
                Wire(server.bootstrap, timeout=TIMEOUT) as ending,
                Wire(server.bootstrap, timeout=TIMEOUT) as producing,
            ):
                ending.send(end_request((producer_id, epoch), commit=True))
                wait_for(lambda: state(opened) is TxnState.PREPARE_COMMIT, "the end was prepared")
                sent = producing.send(produce_request((producer_id, epoch + 1), 0, b"b"))
                wait_for(lambda: asks.count >= 2, "the refused add was asked again")
                # The wait holds no thread of the loop's: another client is served.
                answer = ask(server, ApiKey.API_VERSIONS, 3, client_software_name="t")
                assert answer.error_code == KafkaCode.NONE
                released.set()
                ended = ending.receive(response_schema(ApiKey.END_TXN, 5))[1]
                assert (ended.error_code, ended.producer_epoch) == (KafkaCode.NONE, epoch + 1)
                answered, produced = producing.receive(response_schema(ApiKey.PRODUCE, 12))
            assert answered == sent
            assert produced.responses[0].partition_responses[0].error_code == KafkaCode.NONE
            assert asks.refused >= 1
            assert end(server, (producer_id, epoch + 1), True).error_code == KafkaCode.NONE
        finally:
            server.stop()
        assert values(opened, "in", "read_committed") == [b"a", b"b"]


def test_a_produce_whose_window_ends_before_the_completion_is_answered_concurrent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With markers held past the window, the Produce v12 is answered what
    Kafka answers when its window ends, CONCURRENT_TRANSACTIONS, after
    asking the coordinator more than once. (A window of a second, so that
    a loaded machine's stall cannot close it at the first answer.)"""
    config = engine.EngineConfig(
        transactions=TransactionConfig(add_partitions_to_txn_retry_backoff_max_ms=1000)
    )
    with engine.open(tmp_path / "node", config=config) as opened:
        opened.create_topic("in", 1)
        server = InProcessServer(opened)
        try:
            producer_id, epoch = init(server)
            assert produce(server, (producer_id, epoch), 0, b"a") == KafkaCode.NONE
            released = hold_markers(monkeypatch, TIMEOUT)
            asks = count_adds(monkeypatch)
            with Wire(server.bootstrap, timeout=TIMEOUT) as ending:
                ending.send(end_request((producer_id, epoch), commit=True))
                wait_for(lambda: state(opened) is TxnState.PREPARE_COMMIT, "the end was prepared")
                bumped = (producer_id, epoch + 1)
                assert produce(server, bumped, 0, b"b") == KafkaCode.CONCURRENT_TRANSACTIONS
                assert asks.refused >= 2
                released.set()
                ended = ending.receive(response_schema(ApiKey.END_TXN, 5))[1]
                assert ended.error_code == KafkaCode.NONE
            assert produce(server, bumped, 0, b"b") == KafkaCode.NONE
        finally:
            server.stop()


@dataclasses.dataclass
class AddCount:
    count: int = 0
    refused: int = 0


def count_adds(monkeypatch: pytest.MonkeyPatch) -> AddCount:
    """Counts the coordinator's adds, and those refused CONCURRENT_TRANSACTIONS."""
    counted = AddCount()
    add_partitions = TransactionCoordinator.add_partitions

    def counting(self: TransactionCoordinator, *args: Any) -> Future[None]:
        counted.count += 1
        try:
            added = add_partitions(self, *args)
        except ConcurrentTransactions:
            counted.refused += 1
            raise
        added.add_done_callback(refused_later)
        return added

    def refused_later(done: Future[None]) -> None:
        if isinstance(done.exception(), ConcurrentTransactions):
            counted.refused += 1

    monkeypatch.setattr(TransactionCoordinator, "add_partitions", counting)
    return counted


def state(opened: engine.Engine) -> TxnState:
    return opened.transactions.describe("pipeline").state


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.005)


def end_request(producer: tuple[int, int], commit: bool) -> Any:
    return build(
        request_schema(ApiKey.END_TXN, 5),
        transactional_id="pipeline",
        producer_id=producer[0],
        producer_epoch=producer[1],
        committed=commit,
    )


def produce_request(producer: tuple[int, int], sequence: int, value: bytes) -> Any:
    batch = native.encode_batch(
        [native.RecordSpec(0, None, value, ())],
        producer_id=producer[0],
        producer_epoch=producer[1],
        base_sequence=sequence,
        is_transactional=True,
    )
    return build(
        request_schema(ApiKey.PRODUCE, 12),
        transactional_id="pipeline",
        acks=-1,
        timeout_ms=int(TIMEOUT * 1000),
        topic_data=[{"name": "in", "partition_data": [{"index": 0, "records": batch}]}],
    )


def test_pipelined_produces_stay_in_order_behind_an_implicit_add(
    node: tuple[engine.Engine, InProcessServer],
) -> None:
    """A Produce v12 that adds a partition waits for the add, with its
    batch for a partition already in the transaction; a Produce sent
    behind it on the same connection for that partition never appends
    ahead of it (it is refused retriably while the add is written, or
    appended after), so the producer never sees its sequences out of
    order."""
    opened, server = node
    opened.create_partitions("in", 2)
    producer_id, epoch = init(server)
    assert produce(server, (producer_id, epoch), 0, b"p0-0") == KafkaCode.NONE

    def batch(sequence: int, value: bytes) -> bytes:
        return native.encode_batch(
            [native.RecordSpec(0, None, value, ())],
            producer_id=producer_id,
            producer_epoch=epoch,
            base_sequence=sequence,
            is_transactional=True,
        )

    def request(*partitions: tuple[int, bytes]) -> Any:
        return build(
            request_schema(ApiKey.PRODUCE, 12),
            transactional_id="pipeline",
            acks=-1,
            timeout_ms=int(TIMEOUT * 1000),
            topic_data=[
                {
                    "name": "in",
                    "partition_data": [{"index": i, "records": b} for i, b in partitions],
                }
            ],
        )

    adding = request((0, batch(1, b"p0-1")), (1, batch(0, b"p1-0")))
    behind = request((0, batch(2, b"p0-2")))
    schema = response_schema(ApiKey.PRODUCE, 12)
    with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
        wire.send(adding)
        wire.send(behind)
        first = wire.receive(schema)[1].responses[0].partition_responses
        second = wire.receive(schema)[1].responses[0].partition_responses[0].error_code
        assert [p.error_code for p in first] == [KafkaCode.NONE, KafkaCode.NONE]
        assert second in (KafkaCode.NONE, KafkaCode.CONCURRENT_TRANSACTIONS)
        if second != KafkaCode.NONE:  # the client's retry
            wire.send(behind)
            retried = wire.receive(schema)[1].responses[0].partition_responses[0]
            assert retried.error_code == KafkaCode.NONE
    assert end(server, (producer_id, epoch), True).error_code == KafkaCode.NONE
    assert values(opened, "in", "read_committed", 2) == [b"p0-0", b"p0-1", b"p0-2", b"p1-0"]


def add_v4_plus(
    server: InProcessServer, version: int, producer: tuple[int, int], verify: bool
) -> Any:
    return ask(
        server,
        ApiKey.ADD_PARTITIONS_TO_TXN,
        version,
        transactions=[
            {
                "transactional_id": "pipeline",
                "producer_id": producer[0],
                "producer_epoch": producer[1],
                "verify_only": verify,
                "topics": [{"name": "in", "partitions": [0]}],
            }
        ],
    )


def partition_codes(answer: Any) -> list[int]:
    return [
        p.partition_error_code
        for result in answer.results_by_transaction
        for topic in result.topic_results
        for p in topic.results_by_partition
    ]


def test_add_partitions_to_txn_v4_and_v5_verify_and_add_as_a_broker_asks(
    node: tuple[engine.Engine, InProcessServer],
) -> None:
    """Kafka's broker-to-broker AddPartitionsToTxn: verify_only changes
    nothing and finds a partition outside the transaction
    TRANSACTION_ABORTABLE at v5, INVALID_TXN_STATE at v4; without it the
    partition is added."""
    opened, server = node
    producer = init(server)
    codes = {v: partition_codes(add_v4_plus(server, v, producer, True)) for v in (4, 5)}
    assert codes == {4: [KafkaCode.INVALID_TXN_STATE], 5: [KafkaCode.TRANSACTION_ABORTABLE]}
    assert opened.transactions.describe("pipeline").state is TxnState.EMPTY
    added = add_v4_plus(server, 5, producer, False)
    assert (added.error_code, partition_codes(added)) == (KafkaCode.NONE, [KafkaCode.NONE])
    assert partition_codes(add_v4_plus(server, 5, producer, True)) == [KafkaCode.NONE]
    assert produce(server, producer, 0, b"a", version=11) == KafkaCode.NONE  # no add needed
    fenced = add_v4_plus(server, 5, (producer[0], producer[1] + 1), True)
    assert partition_codes(fenced) == [KafkaCode.PRODUCER_FENCED]


def test_add_partitions_to_txn_v4_needs_cluster_action(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as opened:
        opened.create_topic("in", 1)
        server = InProcessServer(
            opened, config=ServerConfig(authorizer="acl"), principal="User:nobody"
        )
        try:
            answer = add_v4_plus(server, 4, (0, 0), False)
        finally:
            server.stop()
    assert (answer.error_code, answer.results_by_transaction) == (
        KafkaCode.CLUSTER_AUTHORIZATION_FAILED,
        (),
    )


def add_v3(server: InProcessServer, producer: tuple[int, int]) -> Any:
    return ask(
        server,
        ApiKey.ADD_PARTITIONS_TO_TXN,
        3,
        v3_and_below_transactional_id="pipeline",
        v3_and_below_producer_id=producer[0],
        v3_and_below_producer_epoch=producer[1],
        v3_and_below_topics=[{"name": "in", "partitions": [0]}],
    )


@pytest.mark.parametrize("version", [3, 4, 5])
def test_an_add_of_v4_and_v5_records_transaction_version_2_and_a_restart_loads_it(
    tmp_path: Path, version: int
) -> None:
    """Kafka's transactionVersionForAddPartitionsToTxn: an AddPartitionsToTxn
    above v3 comes from a broker adding for a transactions v2 client, so the
    transaction's state records TV 2 (v3 and below, a v1 client's: 0). The
    state log's value is format 2 with the keys docs/transactions.md lists,
    in its order, and a restart finds the version where it was."""
    with engine.open(tmp_path / "node") as opened:
        opened.create_topic("in", 1)
        server = InProcessServer(opened)
        try:
            producer = init(server)
            if version == 3:
                codes = [
                    r.partition_error_code for r in partition_results_v3(add_v3(server, producer))
                ]
            else:
                codes = partition_codes(add_v4_plus(server, version, producer, False))
            assert codes == [KafkaCode.NONE]
            assert produce(server, producer, 0, b"a", version=11) == KafkaCode.NONE
        finally:
            server.stop()
        record = opened.transactions._log.get("pipeline")
        opened.close(flush=False)
    wanted = 2 if version > 3 else 0
    documented = [row["key"].strip("`") for row in docspec.table("transactions.md", "key", "value")]
    if wanted:
        assert list(record) == documented
        assert (record["v"], record["tv"], record["next_pid"]) == (2, 2, -1)
    else:
        assert list(record) == [key for key in documented if key not in ("tv", "next_pid")]
        assert record["v"] == 1
    assert (record["state"], record["partitions"]) == ("Ongoing", [["in", 0]])
    with engine.open(tmp_path / "node") as reopened:
        meta = reopened.transactions.describe("pipeline")
        assert (meta.state, meta.transaction_version) == (TxnState.ONGOING, wanted)
        server = InProcessServer(reopened)
        try:
            ended = end(server, producer, True)
        finally:
            server.stop()
        assert (ended.error_code, ended.producer_epoch) == (KafkaCode.NONE, producer[1] + 1)
        assert values(reopened, "in", "read_committed") == [b"a"]


def partition_results_v3(answer: Any) -> list[Any]:
    return [p for topic in answer.results_by_topic_v3_and_below for p in topic.results_by_partition]


def at_the_last_epoch(tmp_path: Path) -> int:
    """A node whose topic ``in`` is made and whose transactional id
    "pipeline" is at the epoch before the last, left closed; returns its
    producer id."""
    with engine.open(tmp_path / "node") as opened:
        opened.create_topic("in", 1)
        server = InProcessServer(opened)
        try:
            producer_id, _ = init(server)
        finally:
            server.stop()
        at_epoch(opened, "pipeline", MAX_EPOCH - 1)
    return producer_id


def test_end_txn_v5_of_the_producer_id_an_end_moved_from_is_fenced(tmp_path: Path) -> None:
    """A v2 commit at the last epoch moves the id to a new producer id; the
    old id's EndTxn v5 while the new one's transaction is open is answered
    PRODUCER_FENCED, as Kafka's retryOnOverflow check answers it
    (docs/design/0090), and a retry of the commit the new id and epoch."""
    old = at_the_last_epoch(tmp_path)
    with engine.open(tmp_path / "node") as opened:
        server = InProcessServer(opened)
        try:
            last = (old, MAX_EPOCH - 1)
            assert produce(server, last, 0, b"a") == KafkaCode.NONE
            moved = end(server, last, True)
            assert moved.error_code == KafkaCode.NONE and moved.producer_id != old
            new = (moved.producer_id, moved.producer_epoch)
            assert new[1] == 0
            retried = end(server, last, True)
            assert (retried.error_code, retried.producer_id, retried.producer_epoch) == (
                KafkaCode.NONE,
                *new,
            )
            assert produce(server, new, 0, b"b") == KafkaCode.NONE  # the new id's transaction
            stale = end(server, last, False)
            assert (stale.error_code, stale.producer_id) == (KafkaCode.PRODUCER_FENCED, -1)
            assert end(server, new, True).error_code == KafkaCode.NONE
        finally:
            server.stop()
        assert values(opened, "in", "read_committed") == [b"a", b"b"]


def test_end_txn_v5_at_the_last_epoch_is_answered_while_its_marker_keeps_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A v2 commit at the last epoch whose marker keeps failing for a cause
    not the store's: its EndTxn v5 is answered with the new producer id at
    epoch 0, as Kafka 4 answers it once Prepare* is durable, not left
    waiting past the client's request timeout; until the transaction
    completes the new id's Produce v12 and its EndTxn are answered
    CONCURRENT_TRANSACTIONS, which clients retry (never
    INVALID_PRODUCER_ID_MAPPING, which is fatal); then it commits."""
    old = at_the_last_epoch(tmp_path)
    with engine.open(tmp_path / "node") as opened:
        server = InProcessServer(opened)
        try:
            last = (old, MAX_EPOCH - 1)
            assert produce(server, last, 0, b"a") == KafkaCode.NONE
            failing = RefusedMarkers(monkeypatch, opened, ("in", 0), 1_000_000, io_error)
            moved = end(server, last, True)
            assert moved.error_code == KafkaCode.NONE and moved.producer_id != old
            new = (moved.producer_id, moved.producer_epoch)
            assert new[1] == 0 and failing.refused >= 1
            assert produce(server, new, 0, b"b") == KafkaCode.CONCURRENT_TRANSACTIONS
            assert end(server, new, True).error_code == KafkaCode.CONCURRENT_TRANSACTIONS
            failing.heal()
            deadline = time.monotonic() + TIMEOUT
            while opened.transactions.describe("pipeline").state is not TxnState.COMPLETE_COMMIT:
                assert time.monotonic() < deadline, "the transaction never completed"
                time.sleep(0.01)
            assert produce(server, new, 0, b"b") == KafkaCode.NONE
            assert end(server, new, True).error_code == KafkaCode.NONE
        finally:
            server.stop()
        assert values(opened, "in", "read_committed") == [b"a", b"b"]
