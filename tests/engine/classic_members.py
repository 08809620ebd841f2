"""A classic group's lone member, joined and synced through the embedded
coordinator: a Stable group for a test to refuse the next write of."""

from __future__ import annotations

from typing import Any

from engine.engine import Engine
from engine.protocol.kafka_code import KafkaCode


def stable_member(
    e: Engine,
    group_id: str,
    metadata: bytes,
    assignment: bytes,
    *,
    session_timeout_ms: int,
    rebalance_timeout_ms: int,
    timeout: float,
) -> Any:
    """Joins a member of protocol "range" (its subscription ``metadata``)
    to ``group_id`` and syncs it as the leader with ``assignment``: its
    join's answer, both answered NONE within ``timeout`` seconds."""
    joined = e.groups.join_group(
        group_id, "", None, "consumer", [("range", metadata)],
        session_timeout_ms, rebalance_timeout_ms, require_known_member_id=False,
    ).result(timeout)  # fmt: skip
    assert joined.error == KafkaCode.NONE
    synced = e.groups.sync_group(
        group_id, joined.generation_id, joined.member_id, None, "consumer", "range",
        {joined.member_id: assignment},
    ).result(timeout)  # fmt: skip
    assert synced.error == KafkaCode.NONE
    return joined
