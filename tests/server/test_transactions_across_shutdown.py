"""A transaction coordinator that closed (or is closing) answers as Kafka's
answers once it is no longer the coordinator: NOT_COORDINATOR on the
requests about a transactional id, COORDINATOR_NOT_AVAILABLE on
DescribeTransactions and ListTransactions (no longer active); never
NOT_LEADER_OR_FOLLOWER, a partition's code, after which kafka-python's
transactional producer asks the coordinator it knew again without looking
it up (a client that takes it as fatal fails the transaction)."""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from kio.index import load_request_schema as request_schema

import engine
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from tests.engine.test_transactions import values
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build

TIMEOUT = 30.0


class Node:
    """An engine and its server, closed and opened again on the same
    storage and the same port (where the client knew its broker)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.engine = self._open()
        self.engine.create_topic("in", 1)
        self.server = InProcessServer(self.engine)
        self.port = self.server.server.port

    def _open(self) -> engine.Engine:
        return engine.open(self.root / "data", f"file://{self.root / 'objects'}")

    def close_engine(self) -> None:
        """The engine closes under a server that still answers."""
        self.engine.close()

    def restart(self) -> None:
        self.shut()
        self.start_again()

    def shut(self) -> None:
        self.server.stop()
        self.engine.close()

    def start_again(self) -> None:
        """Serves on the port the clients know: SO_REUSEADDR rides out the
        old connections' TIME_WAIT, and a port another socket took
        meanwhile (an outgoing connection's, on a shared machine) is asked
        for again until ``TIMEOUT``."""
        self.engine = self._open()
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                self.server = InProcessServer(self.engine, port=self.port)
                return
            except OSError as error:
                if error.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                    raise
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.stop()
        self.engine.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    opened = Node(tmp_path)
    try:
        yield opened
    finally:
        opened.stop()


def _in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException]]:
    failures: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, failures


class Calls:
    """Counts a coordinator method's calls (each request that reached it),
    and the FindCoordinator requests the server had answered at the first."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, coordinator: Any, name: str, node: Node
    ) -> None:
        self.count = 0
        self.finds_before = -1
        method = getattr(coordinator, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            if self.count == 0:
                self.finds_before = finds(node)
            self.count += 1
            return method(*args, **kwargs)

        monkeypatch.setattr(coordinator, name, counted)


def finds(node: Node) -> int:
    """FindCoordinator requests the node's server has answered."""
    answered = node.server.server.request_metrics.requests.copy()
    return sum(n for (key, _, _), n in answered.items() if key == ApiKey.FIND_COORDINATOR)


def _wait(condition: Callable[[], bool], what: str) -> None:
    for _ in range(int(TIMEOUT / 0.01)):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(what)


STEPS = {
    "init_producer_id": "InitProducerId",
    "add_partitions": "AddPartitionsToTxn",
    "end_transaction": "EndTxn",
}


@pytest.mark.parametrize("step", STEPS)
def test_kafka_pythons_transaction_goes_on_across_a_shutdown(
    node: Node, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """The engine closes under the server before the step's request: it is
    answered NOT_COORDINATOR, which kafka-python retries (looking its
    coordinator up again) until the node is back, then the transaction
    commits. NOT_LEADER_OR_FOLLOWER was sent again to the coordinator the
    client knew, never looked up again, as if that one would come back."""
    producer = KafkaProducer(
        bootstrap_servers=f"127.0.0.1:{node.port}",
        transactional_id="kp-app",
        max_block_ms=60_000,
        retry_backoff_ms=20,
        reconnect_backoff_max_ms=200,
    )
    try:
        if step != "init_producer_id":
            producer.init_transactions()
            producer.begin_transaction()
        if step == "end_transaction":
            producer.send("in", b"one", partition=0).get(timeout=TIMEOUT)
        calls = Calls(monkeypatch, node.engine.transactions, step, node)
        node.close_engine()

        def rest() -> None:
            if step == "init_producer_id":
                producer.init_transactions()
                producer.begin_transaction()
            if step != "end_transaction":
                producer.send("in", b"one", partition=0).get(timeout=TIMEOUT)
            producer.commit_transaction()

        thread, failures = _in_thread(rest)
        # Asked again after its answer, the coordinator looked up between:
        # the client took the answer for a coordinator that moved.
        _wait(
            lambda: (calls.count >= 2 and finds(node) > calls.finds_before) or bool(failures),
            f"{STEPS[step]} was not asked again of a coordinator looked up again",
        )
        assert not failures, failures
        node.restart()
        thread.join(TIMEOUT)
        assert not thread.is_alive()
        assert not failures, failures
    finally:
        producer.close(timeout=10)
    assert values(node.engine, "in", "read_committed") == [b"one"]


def test_a_closed_coordinator_answers_every_transactional_api_as_kafka(node: Node) -> None:
    """NOT_COORDINATOR on the requests about a transactional id (Kafka's
    states cleared at shutdown), COORDINATOR_NOT_AVAILABLE on the
    describe and list (Kafka's coordinator no longer active)."""
    coordinator = node.engine.transactions
    producer_id, epoch = coordinator.init_producer_id("app", 60_000).result(TIMEOUT)
    node.close_engine()
    answers = {}
    with Wire(node.server.bootstrap, timeout=TIMEOUT) as wire:
        answers["InitProducerId"] = wire.request(
            build(
                request_schema(ApiKey.INIT_PRODUCER_ID, 4),
                transactional_id="app",
                transaction_timeout=timedelta(seconds=60),
                producer_id=-1,
                producer_epoch=-1,
            )
        ).error_code
        add = wire.request(
            build(
                request_schema(ApiKey.ADD_PARTITIONS_TO_TXN, 3),
                v3_and_below_transactional_id="app",
                v3_and_below_producer_id=producer_id,
                v3_and_below_producer_epoch=epoch,
                v3_and_below_topics=[{"name": "in", "partitions": [0]}],
            )
        )
        (topic,) = add.results_by_topic_v3_and_below
        (partition,) = topic.results_by_partition
        answers["AddPartitionsToTxn"] = partition.partition_error_code
        verify = wire.request(
            build(
                request_schema(ApiKey.ADD_PARTITIONS_TO_TXN, 5),
                transactions=[
                    {
                        "transactional_id": "app",
                        "producer_id": producer_id,
                        "producer_epoch": epoch,
                        "verify_only": True,
                        "topics": [{"name": "in", "partitions": [0]}],
                    }
                ],
            )
        )
        (result,) = verify.results_by_transaction
        answers["AddPartitionsToTxn verify_only"] = (
            result.topic_results[0].results_by_partition[0].partition_error_code
        )
        answers["AddOffsetsToTxn"] = wire.request(
            build(
                request_schema(ApiKey.ADD_OFFSETS_TO_TXN, 3),
                transactional_id="app",
                producer_id=producer_id,
                producer_epoch=epoch,
                group_id="g",
            )
        ).error_code
        committed = wire.request(
            build(
                request_schema(ApiKey.TXN_OFFSET_COMMIT, 3),
                transactional_id="app",
                group_id="g",
                producer_id=producer_id,
                producer_epoch=epoch,
                generation_id=-1,
                member_id="",
                topics=[
                    {"name": "in", "partitions": [{"partition_index": 0, "committed_offset": 0}]}
                ],
            )
        )
        answers["TxnOffsetCommit"] = committed.topics[0].partitions[0].error_code
        answers["EndTxn"] = wire.request(
            build(
                request_schema(ApiKey.END_TXN, 3),
                transactional_id="app",
                producer_id=producer_id,
                producer_epoch=epoch,
                committed=True,
            )
        ).error_code
        (state,) = wire.request(
            build(request_schema(ApiKey.DESCRIBE_TRANSACTIONS, 0), transactional_ids=["app"])
        ).transaction_states
        answers["DescribeTransactions"] = state.error_code
        answers["ListTransactions"] = wire.request(
            build(request_schema(ApiKey.LIST_TRANSACTIONS, 1))
        ).error_code
    assert answers == {
        "InitProducerId": KafkaCode.NOT_COORDINATOR,
        "AddPartitionsToTxn": KafkaCode.NOT_COORDINATOR,
        "AddPartitionsToTxn verify_only": KafkaCode.NOT_COORDINATOR,
        "AddOffsetsToTxn": KafkaCode.NOT_COORDINATOR,
        # The group coordinator's, inactive (docs/design/0109).
        "TxnOffsetCommit": KafkaCode.COORDINATOR_NOT_AVAILABLE,
        "EndTxn": KafkaCode.NOT_COORDINATOR,
        "DescribeTransactions": KafkaCode.COORDINATOR_NOT_AVAILABLE,
        "ListTransactions": KafkaCode.COORDINATOR_NOT_AVAILABLE,
    }


def test_the_node_starts_again_on_its_port_once_another_socket_lets_it_go(node: Node) -> None:
    """The port is its clients' only address for the node: another socket
    holding it a moment (an outgoing connection given it as its own, on a
    shared machine) delays the start, never fails it."""
    node.shut()
    holder = socket.socket()
    holder.bind(("127.0.0.1", node.port))
    holder.listen()
    threading.Timer(0.5, holder.close).start()
    node.start_again()
    assert node.server.server.port == node.port
    with socket.create_connection(("127.0.0.1", node.port), timeout=TIMEOUT):
        pass
