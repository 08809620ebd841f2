"""What Kafka refuses in a DeleteTopics request before it looks a topic up
(ControllerApis.deleteTopics): an entry naming neither a name nor an id,
or both, and a name or an id given more than once, each answered once
with INVALID_REQUEST and none of them deleted."""

from __future__ import annotations

from collections import Counter
from typing import Any

from engine.protocol.kafka_code import KafkaCode

ZERO_ID = bytes(16)
"""A DeleteTopics entry's topic id when it names the topic by name."""

MAPS_TO_A_GIVEN_ID = "The provided topic name maps to an ID that was already supplied."


def malformed(
    wanted: list[tuple[str | None, bytes]],
) -> tuple[list[tuple[str | None, bytes]], list[dict[str, Any]]]:
    """The entries to go on with, and the answers of those refused."""
    names = Counter(name for name, given_id in wanted if name is not None and given_id == ZERO_ID)
    ids = Counter(given_id for name, given_id in wanted if name is None and given_id != ZERO_ID)
    kept: list[tuple[str | None, bytes]] = []
    refused: list[dict[str, Any]] = []
    for name, given_id in wanted:
        if name is None and given_id == ZERO_ID:
            refused.append(refusal(None, ZERO_ID, "Neither topic name nor id were specified."))
        elif name is not None and given_id != ZERO_ID:
            refused.append(
                refusal(name, given_id, "You may not specify both topic name and topic id.")
            )
        elif (name is None or names[name] == 1) and (given_id == ZERO_ID or ids[given_id] == 1):
            kept.append((name, given_id))
    refused += [
        refusal(name, ZERO_ID, "Duplicate topic name.") for name, n in names.items() if n > 1
    ]
    refused += [
        refusal(None, given_id, "Duplicate topic id.") for given_id, n in ids.items() if n > 1
    ]
    return kept, refused


def refusal(name: str | None, given_id: bytes, message: str) -> dict[str, Any]:
    return {
        "name": name,
        "topic_id": given_id,
        "error_code": KafkaCode.INVALID_REQUEST,
        "error_message": message,
    }
