"""A flood of SASL/PLAIN logins over real sockets cannot hold the event
loop: passwords are checked on threads of their own, at most
sasl.password.check.queue.size wait, and one more is closed unanswered, as
is one past its address's share of them.

While the flood runs, a client authenticated on connections of its own
(librdkafka's producer and consumer) produces and fetches, and the tests
count what it got answered. A derivation held back by the test (a slow
one on cue) shows the bound on the queue; real derivations show the loop
appending the other client's records while they run."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kio.index import load_request_schema, load_response_schema

import engine
import native
from engine import credentials
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.config import ServerConfig
from engine.server.listeners import parse_listeners
from engine.server.server import Server
from native import RecordSpec
from s3stream import StreamStoreConfig
from tests.server.conftest import quiet_librdkafka
from tests.server.held_checks import HeldChecks, held_checks
from tests.server.in_process import InProcessServer
from tests.server.wire import (
    ConnectionClosed,
    Wire,
    build,
    decode_response,
    encode_request,
    fetch_from_start,
    frame,
    response_schema_for,
)
from wal.thread_priority import ThreadPriority, own_priority

PASSWORD = "correct horse battery staple"
TOPIC = "served"
TIMEOUT = 30.0
QUEUE_SIZE = 2
INVALID = "Authentication failed: Invalid username or password"
METADATA = build(load_request_schema(ApiKey.METADATA, 4), topics=None)
AUTHENTICATE = build(load_request_schema(ApiKey.SASL_AUTHENTICATE, 2), auth_bytes=b"")


@dataclass
class Node:
    engine: engine.Engine
    server: InProcessServer

    @property
    def bootstrap(self) -> str:
        return self.server.bootstrap


@contextmanager
def serving(path: Path, queue_size: int) -> Iterator[Node]:
    """A node checking PLAIN passwords on one thread, ``queue_size`` more
    waiting, each address its default share of them."""
    config = ServerConfig(
        listeners=parse_listeners("SASL_PLAINTEXT://127.0.0.1:0"),
        sasl_password_check_threads=1,
        sasl_password_check_queue_size=queue_size,
    )
    with engine.open(path) as opened:
        # The most rounds Kafka allows: each check is as long as one can be.
        slow = credentials.new_credential("PLAIN", PASSWORD, credentials.MAX_ITERATIONS)
        opened.credentials.set("alice", "PLAIN", slow)
        opened.credentials.add("alice", "SCRAM-SHA-512", PASSWORD)
        opened.create_topic(TOPIC, 1)
        server = InProcessServer(opened, config=config)
        try:
            yield Node(opened, server)
        finally:
            server.stop()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with serving(tmp_path / "node", QUEUE_SIZE) as served:
        yield served


class Served:
    """A client authenticated with SCRAM (whose server side derives
    nothing) before the flood: a producer sending one record at a time and
    a consumer reading them, each counting what it got, on threads."""

    def __init__(self, node: Node) -> None:
        settings = {
            "bootstrap.servers": node.bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "alice",
            "sasl.password": PASSWORD,
            **quiet_librdkafka(),
        }
        self.producer = Producer({**settings, "acks": "all", "linger.ms": 0})
        self.consumer = Consumer({**settings, "group.id": "served", "enable.auto.commit": False})
        self.consumer.assign([TopicPartition(TOPIC, 0, 0)])
        self.produced = 0
        self.consumed = 0
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._guarded, args=(self._produce,), name="served-produce"),
            threading.Thread(target=self._guarded, args=(self._consume,), name="served-consume"),
        ]
        for thread in self._threads:
            thread.start()
        self.until(lambda: self.produced >= 2 and self.consumed >= 2)  # connected, logged in

    def _guarded(self, run: Callable[[], None]) -> None:
        try:
            run()
        except BaseException as error:  # reported by until() and close()
            self.failure = error

    def _produce(self) -> None:
        for number in itertools.count():
            if self._stop.is_set():
                return
            self.producer.produce(TOPIC, f"record-{number}".encode())
            if self.producer.flush(TIMEOUT) == 0:
                self.produced += 1

    def _consume(self) -> None:
        while not self._stop.is_set():
            message = self.consumer.poll(0.2)
            if message is not None and message.error() is None:
                self.consumed += 1

    def until(self, condition: Callable[[], bool]) -> None:
        """Waits (at most TIMEOUT) until ``condition`` holds."""
        deadline = time.monotonic() + TIMEOUT
        while not condition() and self.failure is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.failure is None, self.failure
        assert condition(), f"served {self.produced} produces and {self.consumed} records only"

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(TIMEOUT)
        self.consumer.close()
        del self.producer  # librdkafka's handle goes with it, and stops reconnecting


@pytest.fixture
def served(node: Node) -> Iterator[Served]:
    client = Served(node)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldChecks]:
    with held_checks(monkeypatch) as checks:
        yield checks


def handshake(wire: Wire, version: int) -> None:
    request = build(load_request_schema(ApiKey.SASL_HANDSHAKE, version), mechanism="PLAIN")
    assert wire.request(request).error_code == KafkaCode.NONE


def send_login(wire: Wire, token: bytes, version: int) -> None:
    """A SaslAuthenticate (after SaslHandshake v1), or the bare token
    (after v0); not waiting for its answer."""
    if version == 0:
        wire.send_raw(frame(token))
    else:
        wire.send(build(load_request_schema(ApiKey.SASL_AUTHENTICATE, 2), auth_bytes=token))


def outcome(wire: Wire) -> Any:
    """The login's answer, or None when the server closed the connection
    without one."""
    try:
        payload = wire.read_frame()
    except ConnectionClosed:
        return None
    return decode_response(response_schema_for(AUTHENTICATE), payload)[1]


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition(), f"not within {TIMEOUT} s: {what}"


@pytest.mark.parametrize("version", [1, 0], ids=["sasl-authenticate", "bare-token"])
def test_logins_past_the_queue_are_closed_while_others_are_served(
    node: Node, served: Served, held: HeldChecks, version: int
) -> None:
    # Each login from an address of its own: the whole queue's bound, not
    # an address's share, closes the logins past it.
    flood = [
        Wire(node.bootstrap, timeout=TIMEOUT, source=f"127.0.0.{number}")
        for number in range(1, QUEUE_SIZE + 8)
    ]
    try:
        for wire in flood:
            handshake(wire, version)
        first, rest = flood[0], flood[1:]
        send_login(first, b"\0alice\0wrong-0", version)
        until(lambda: held.started == 1, "the first check started")
        outcomes: dict[int, Any] = {}
        readers = [
            threading.Thread(target=lambda i=i, w=w: outcomes.__setitem__(i, outcome(w)))
            for i, w in enumerate(rest, 1)
        ]
        for number, wire in enumerate(rest, 1):
            send_login(wire, f"\0alice\0wrong-{number}".encode(), version)
        for reader in readers:
            reader.start()
        # QUEUE_SIZE logins wait for the thread; every one past them is
        # closed unanswered while the check is still held.
        until(lambda: len(outcomes) == len(rest) - QUEUE_SIZE, "the logins past the queue closed")
        assert all(answer is None for answer in outcomes.values())
        # Meanwhile the other client produces and fetches.
        produced, consumed = served.produced, served.consumed
        served.until(lambda: served.produced >= produced + 3 and served.consumed >= consumed + 3)
        assert held.started == 1 and len(outcomes) == len(rest) - QUEUE_SIZE
        held.release()
        for reader in readers:
            reader.join(TIMEOUT)
        answers = [outcome(first), *(outcomes[i] for i in range(1, len(flood)))]
        failed = [a for a in answers if a is not None]
        if version == 0:  # a bare token's failure is a close, as in Kafka
            assert failed == []
        else:
            assert len(failed) == 1 + QUEUE_SIZE
            assert {(a.error_code, a.error_message) for a in failed} == {
                (KafkaCode.SASL_AUTHENTICATION_FAILED, INVALID)
            }
        assert all(wire.closed_by_server(TIMEOUT) for wire in flood)
    finally:
        for wire in flood:
            wire.close()
    # The checks are free again: the right password logs in.
    with Wire(node.bootstrap, timeout=TIMEOUT) as wire:
        handshake(wire, 1)
        send_login(wire, b"\0alice\0" + PASSWORD.encode(), 1)
        assert outcome(wire).error_code == KafkaCode.NONE
        assert wire.request(METADATA).brokers


def test_a_flood_from_one_address_leaves_room_for_a_login_from_another(
    tmp_path: Path, held: HeldChecks
) -> None:
    """One address sends more logins than the thread and the whole queue
    hold: it is admitted its share (a quarter of the queue), the rest of
    its logins are closed unanswered, and a login from another address is
    still checked and gets in."""
    queue_size = 8
    share = queue_size // 4
    # The node's own credentials are derived unheld: held, each waited out
    # held_checks.TIMEOUT before the node served.
    held.release()
    with serving(tmp_path / "node", queue_size) as node:
        held.hold()
        checks = node.server.server.password_checks
        flood = [
            Wire(node.bootstrap, timeout=TIMEOUT, source="127.0.0.1")
            for _ in range(1 + queue_size + 3)
        ]
        try:
            for wire in flood:
                handshake(wire, 1)
            outcomes: dict[int, Any] = {}
            readers = [
                threading.Thread(target=lambda i=i, w=w: outcomes.__setitem__(i, outcome(w)))
                for i, w in enumerate(flood)
            ]
            for number, wire in enumerate(flood):
                send_login(wire, f"\0alice\0wrong-{number}".encode(), 1)
            for reader in readers:
                reader.start()
            until(lambda: len(outcomes) == len(flood) - share, "the logins past the share closed")
            assert all(answer is None for answer in outcomes.values())
            assert checks.by_address == {"127.0.0.1": share}
            with Wire(node.bootstrap, timeout=TIMEOUT, source="127.0.0.2") as other:
                handshake(other, 1)
                send_login(other, b"\0alice\0" + PASSWORD.encode(), 1)
                until(lambda: checks.admitted == share + 1, "the other address's login admitted")
                assert checks.by_address == {"127.0.0.1": share, "127.0.0.2": 1}
                held.release()
                assert outcome(other).error_code == KafkaCode.NONE
                assert other.request(METADATA).brokers
            for reader in readers:
                reader.join(TIMEOUT)
            failed = [a for a in outcomes.values() if a is not None]
            assert [a.error_code for a in failed] == [KafkaCode.SASL_AUTHENTICATION_FAILED] * share
            assert all(wire.closed_by_server(TIMEOUT) for wire in flood)
        finally:
            for wire in flood:
                wire.close()


def test_a_re_authentication_is_checked_off_the_event_loop(
    node: Node, served: Served, held: HeldChecks
) -> None:
    right = b"\0alice\0" + PASSWORD.encode()
    with Wire(node.bootstrap, timeout=TIMEOUT) as wire:
        held.release()
        handshake(wire, 1)
        send_login(wire, right, 1)
        assert outcome(wire).error_code == KafkaCode.NONE
        held.hold()
        started = held.started
        handshake(wire, 1)  # KIP-368: the same exchange on the live connection
        send_login(wire, right, 1)
        until(lambda: held.started == started + 1, "the re-authentication's check started")
        produced, consumed = served.produced, served.consumed
        served.until(lambda: served.produced >= produced + 3 and served.consumed >= consumed + 3)
        held.release()
        assert outcome(wire).error_code == KafkaCode.NONE
        assert wire.request(METADATA).brokers


def test_real_checks_run_while_the_loop_appends_the_other_clients_records(
    node: Node, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No check is held: each derives 16384 rounds of SHA-512. The loop
    appends records only on its own thread, so a record appended between
    a derivation's start and end was appended while it ran: with the
    derivation on the loop, none ever is."""
    partition = node.engine.partition(TOPIC, 0)
    appended_during: list[int] = []
    priorities: set[int | None] = set()
    derive = credentials.salted_password

    def measured(hash_name: str, password: bytes, salt: bytes, iterations: int) -> bytes:
        priorities.add(own_priority())
        before = partition.log_end_offset
        try:
            return derive(hash_name, password, salt, iterations)
        finally:
            appended_during.append(partition.log_end_offset - before)

    monkeypatch.setattr(credentials, "salted_password", measured)
    guessers, guesses = 4, 10
    answers: list[Any] = []

    def guess(number: int) -> None:
        for attempt in range(guesses):
            with Wire(node.bootstrap, timeout=TIMEOUT) as wire:
                handshake(wire, 1)
                send_login(wire, f"\0alice\0guess-{number}-{attempt}".encode(), 1)
                answers.append(outcome(wire))

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(guessers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 4)
    assert len(answers) == guessers * guesses
    # Every guess is refused (answered, or closed when the queue was full).
    assert all(a is None or a.error_message == INVALID for a in answers)
    assert all(a is None or a.error_code == KafkaCode.SASL_AUTHENTICATION_FAILED for a in answers)
    assert len(appended_during) == sum(a is not None for a in answers)
    assert sum(appended_during) > 0, appended_during
    # At the store's background priority, below the event loop's.
    assert priorities == {ThreadPriority.below_caller(StreamStoreConfig().background_nice).nice}
    # And the client still produces and fetches after the flood.
    produced, consumed = served.produced, served.consumed
    served.until(lambda: served.produced >= produced + 3 and served.consumed >= consumed + 3)


def test_a_request_sent_behind_the_login_is_read_once_the_check_is_done(node: Node) -> None:
    """A client may send its first request right behind SaslAuthenticate:
    it is served as the login's outcome says, not refused as coming
    before authentication while the password is checked."""
    schema = load_request_schema(ApiKey.SASL_AUTHENTICATE, 2)
    for password, served in ((PASSWORD, True), ("wrong", False)):
        with Wire(node.bootstrap, timeout=TIMEOUT) as wire:
            handshake(wire, 1)
            login = build(schema, auth_bytes=b"\0alice\0" + password.encode())
            first, second = wire.next_correlation_id(), wire.next_correlation_id()
            wire.send_raw(encode_request(login, first) + encode_request(METADATA, second))
            answer = outcome(wire)
            if served:
                assert answer.error_code == KafkaCode.NONE
                answered, body = wire.receive(response_schema_for(METADATA))
                assert answered == second and body.brokers
            else:
                assert answer.error_code == KafkaCode.SASL_AUTHENTICATION_FAILED
                assert answer.error_message == INVALID
                assert wire.closed_by_server(TIMEOUT)


@pytest.mark.parametrize("version", [1, 0], ids=["sasl-authenticate", "bare-token"])
def test_an_unknown_users_login_waits_for_a_derivation_as_a_known_ones_does(
    node: Node, held: HeldChecks, version: int
) -> None:
    """Refused at once, a login would tell a peer that a user name does
    not exist: the pool derives a stand-in credential's keys for it, and
    it is answered (or, after a bare token, closed) once that is done."""
    with Wire(node.bootstrap, timeout=TIMEOUT) as wire:
        handshake(wire, version)
        send_login(wire, b"\0nobody\0" + PASSWORD.encode(), version)
        until(lambda: held.started == 1, "the unknown user's check started")
        assert node.server.server.password_checks.admitted == 1
        assert held.finished == 0
        held.release()
        answer = outcome(wire)
        if version == 0:  # a bare token's failure is a close, as in Kafka
            assert answer is None
        else:
            assert (answer.error_code, answer.error_message) == (
                KafkaCode.SASL_AUTHENTICATION_FAILED,
                INVALID,
            )
        assert wire.closed_by_server(TIMEOUT)
    assert held.finished == 1


def test_a_server_started_again_after_stop_checks_passwords(tmp_path: Path) -> None:
    """stop() shuts the checks' pool down; a start after it has one again,
    as it has every other part of the server again (each start builds them)."""

    def log_in(port: int) -> Any:
        with Wire(f"127.0.0.1:{port}", timeout=TIMEOUT) as wire:
            handshake(wire, 1)
            send_login(wire, b"\0alice\0" + PASSWORD.encode(), 1)
            return outcome(wire)

    async def run(opened: engine.Engine) -> None:
        config = ServerConfig(listeners=parse_listeners("SASL_PLAINTEXT://127.0.0.1:0"))
        server = Server(opened, config)
        for _ in range(2):
            await server.start()
            try:
                answer = await asyncio.to_thread(log_in, server.port)
            finally:
                await server.stop()
            assert answer is not None and answer.error_code == KafkaCode.NONE

    with engine.open(tmp_path / "node") as opened:
        opened.credentials.add("alice", "PLAIN", PASSWORD)
        asyncio.run(run(opened))


def _produce(value: bytes) -> Any:
    batch = native.encode_batch([RecordSpec(1_700_000_000_000, None, value, ())])
    return build(
        load_request_schema(ApiKey.PRODUCE, 9),
        acks=1,
        timeout_ms=30_000,
        topic_data=[{"name": TOPIC, "partition_data": [{"index": 0, "records": batch}]}],
    )


def test_a_failed_re_authentication_answers_what_came_before_it_and_serves_nothing_after(
    node: Node, held: HeldChecks
) -> None:
    """KIP-368 on a connection with a request in flight (a Fetch waiting
    for records): its re-authentication fails while that Fetch still
    waits. As in Kafka, the Fetch, the SaslHandshake and the failure are
    answered in order, then the connection closes; the Produce sent
    behind the failed SaslAuthenticate is never appended."""
    right = b"\0alice\0" + PASSWORD.encode()
    partition = node.engine.partition(TOPIC, 0)
    server = node.server.server
    with Wire(node.bootstrap, timeout=TIMEOUT) as wire:
        held.release()
        handshake(wire, 1)
        send_login(wire, right, 1)
        assert outcome(wire).error_code == KafkaCode.NONE
        assert partition.log_end_offset == 0
        held.hold()
        waiting = fetch_from_start(TOPIC, max_wait=datetime.timedelta(seconds=TIMEOUT), min_bytes=1)
        again = build(load_request_schema(ApiKey.SASL_HANDSHAKE, 1), mechanism="PLAIN")
        wrong = build(load_request_schema(ApiKey.SASL_AUTHENTICATE, 2), auth_bytes=b"\0alice\0no")
        wire.send_raw(
            encode_request(waiting, 1)
            + encode_request(again, 2)
            + encode_request(wrong, 3)
            + encode_request(_produce(b"after the failure"), 4)
        )
        until(lambda: held.started == 2, "the re-authentication's check started")
        held.release()
        node.server.until_on_loop(
            lambda: any(
                c.authentication is not None and c.authentication.close_after_answer
                for c in server.connections
            )
        )
        node.server.until_on_loop(lambda: True)  # the loop's turns after the failure
        # A record from another client: the Fetch has its answer.
        with Wire(node.bootstrap, timeout=TIMEOUT) as other:
            handshake(other, 1)
            send_login(other, right, 1)
            assert outcome(other).error_code == KafkaCode.NONE
            assert other.request(_produce(b"another client's")).responses[0]
        fetched_id, fetched = wire.receive(load_response_schema(ApiKey.FETCH, 11))
        handshake_id, handshook = wire.receive(load_response_schema(ApiKey.SASL_HANDSHAKE, 1))
        failed_id, failed = wire.receive(load_response_schema(ApiKey.SASL_AUTHENTICATE, 2))
        assert (fetched_id, fetched.error_code) == (1, KafkaCode.NONE)
        assert (handshake_id, handshook.error_code) == (2, KafkaCode.NONE)
        assert (failed_id, failed.error_code, failed.error_message) == (
            3,
            KafkaCode.SASL_AUTHENTICATION_FAILED,
            INVALID,
        )
        assert wire.closed_by_server(TIMEOUT)
    assert partition.log_end_offset == 1  # the other client's record only
