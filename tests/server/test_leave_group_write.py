"""A LeaveGroup is answered after the write it makes: a last member's
leave whose write of the Empty group fails is answered NOT_COORDINATOR on
the wire (Kafka's answer for a write its log refused), and the group is
kept Empty, as Kafka's ClassicGroup is (docs/design/0109)."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from kio.schema.leave_group.v3.request import LeaveGroupRequest, MemberIdentity
from kio.schema.types import GroupId

import engine
from engine.clock import ManualClock
from engine.engine import Engine
from engine.protocol.kafka_code import KafkaCode
from s3stream import StoreFailed
from tests.engine.classic_members import stable_member
from tests.engine.conftest import FAST_STORE
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire

TIMEOUT = 30.0
GROUPS = engine.GroupConfig(group_initial_rebalance_delay_ms=0, group_min_session_timeout_ms=10)


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[tuple[Engine, InProcessServer]]:
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600, groups=GROUPS)
    # A clock that stands: the member's session cannot end while a loaded
    # machine runs the test.
    e = engine.open(
        tmp_path / "data", f"file://{tmp_path / 'objects'}", config, clock=ManualClock()
    )
    server = InProcessServer(e)
    try:
        yield e, server
    finally:
        server.stop()
        e.close()


def _stable_member(e: Engine) -> str:
    joined = stable_member(
        e, "g", b"m", b"assigned", session_timeout_ms=10_000, rebalance_timeout_ms=5_000,
        timeout=TIMEOUT,
    )  # fmt: skip
    return str(joined.member_id)


def _refuse_next_group_write(monkeypatch: pytest.MonkeyPatch, e: Engine) -> None:
    state_log = e.groups._run.state_log
    submit = state_log.store.submit
    failures = iter([StoreFailed(OSError(errno.EIO, "the object store is down"))])

    def submit_failing_once(stream_id: int, *args: Any, **kwargs: Any) -> Future[int]:
        failure = next(failures, None) if stream_id == state_log.stream_id else None
        if failure is not None:
            raise failure
        return submit(stream_id, *args, **kwargs)

    monkeypatch.setattr(state_log.store, "submit", submit_failing_once)


def _leave(server: InProcessServer, member_id: str) -> Any:
    request = LeaveGroupRequest(
        group_id=GroupId("g"),
        members=(MemberIdentity(member_id=member_id, group_instance_id=None),),
    )
    with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
        return wire.request(request)


def test_a_leave_whose_write_fails_is_answered_not_coordinator(
    opened: tuple[Engine, InProcessServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    e, server = opened
    member_id = _stable_member(e)
    with monkeypatch.context() as faults:
        _refuse_next_group_write(faults, e)
        answered = _leave(server, member_id)
    assert answered.error_code == KafkaCode.NOT_COORDINATOR
    assert answered.members == ()
    # The group is kept Empty, the member gone, as Kafka's ClassicGroup is
    # kept (docs/design/0109): a leave again names a member it does not know.
    (described,) = e.groups.describe_groups(["g"])
    assert (described.state, described.members) == ("Empty", [])
    answered = _leave(server, member_id)
    assert answered.error_code == KafkaCode.NONE
    assert [m.error_code for m in answered.members] == [KafkaCode.UNKNOWN_MEMBER_ID]
