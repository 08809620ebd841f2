"""Small pieces several handlers share."""

from __future__ import annotations

import datetime
from typing import Any

from engine.errors import ERROR_CODES
from engine.server.context import NONE, RequestContext


def millis(value: Any) -> int:
    """A kio duration (timedelta) or plain number as whole milliseconds."""
    if isinstance(value, datetime.timedelta):
        return round(value.total_seconds() * 1000)
    return int(value)


def leader_epoch_error(context: RequestContext, current_leader_epoch: int) -> int:
    """The error for a request made under another leader epoch (KIP-320):
    -1 means the client does not know the epoch and skips the check."""
    ours = context.engine.leader_epoch
    if current_leader_epoch < 0 or current_leader_epoch == ours:
        return NONE
    if current_leader_epoch < ours:
        return ERROR_CODES["FENCED_LEADER_EPOCH"]
    return ERROR_CODES["UNKNOWN_LEADER_EPOCH"]


def topic_names_by_id(context: RequestContext) -> dict[bytes, str]:
    engine = context.engine
    return {engine.topic_id(name): name for name in engine.list_topics()}


def uuid_bytes(value: Any) -> bytes:
    """kio decodes UUID fields as uuid.UUID (or None for the zero UUID)."""
    if value is None:
        return bytes(16)
    return bytes(value.bytes) if hasattr(value, "bytes") else bytes(value)
