"""Agent-action records: building one in the shape of the agent-action JSON
Schema that ships with tidelog (engine/schemas/agent_action.schema.json,
registered as ``agent-actions-value`` by ``tidelog schemas init``), and
holding it to that schema before it is sent.

A record is a JSON object; its key is the correlation id, and its headers
carry the correlation id, the causing action's id and the context vector
(:data:`CORRELATION_HEADER`, :data:`CAUSATION_HEADER`,
:data:`~engine.memory.vector.CONTEXT_HEADER`), so a reader can route and
filter without parsing values.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import jsonschema  # type: ignore[import-untyped]
import jsonschema.exceptions  # type: ignore[import-untyped]
import jsonschema.validators  # type: ignore[import-untyped]

from engine.errors import EngineError
from engine.memory.vector import CONTEXT_HEADER, OffsetVector, RecordRef
from engine.protocol.kafka_code import KafkaCode
from engine.schemas.linear_json_schema import linear_validator
from engine.types import Header

CORRELATION_HEADER = "tidelog.correlation.id"
"""The header holding an action's correlation id (also the record's key)."""

CAUSATION_HEADER = "tidelog.causation.id"
"""The header holding the action_id of the action that caused this one."""

ActionType = Literal[
    "tool_call", "tool_result", "decision", "approval", "denial", "override", "compensation"
]

ACTION_TYPES: tuple[ActionType, ...] = (
    "tool_call",
    "tool_result",
    "decision",
    "approval",
    "denial",
    "override",
    "compensation",
)

Reference = RecordRef | str | Mapping[str, Any]
"""Where a payload is kept: a record (its topic, partition, offset, leader
epoch and topic id), a URI, or the schema's reference object as a mapping
(e.g. with ``sha256``)."""


class InvalidAction(EngineError):
    """An action does not hold to the agent-action schema; nothing was sent.
    ``path`` is the JSON path of the first offending field."""

    code = KafkaCode.INVALID_RECORD

    def __init__(self, message: str, path: str = "$") -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: ``kind`` is agent, human or service; ``principal`` the
    authenticated principal (e.g. ``User:alice``), if known."""

    kind: str
    id: str
    principal: str | None = None

    def to_json(self) -> dict[str, str]:
        out = {"kind": self.kind, "id": self.id}
        if self.principal is not None:
            out["principal"] = self.principal
        return out


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    version: str | None = None

    def to_json(self) -> dict[str, str]:
        return {"name": self.name} | ({} if self.version is None else {"version": self.version})


@dataclass(frozen=True, slots=True)
class Policy:
    """The policy state an action was taken under; ``verdict`` is allow,
    deny, needs_approval or not_evaluated."""

    verdict: str
    policy_id: str | None = None
    version: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, str]:
        fields = {
            "policy_id": self.policy_id,
            "version": self.version,
            "verdict": self.verdict,
            "reason": self.reason,
        }
        return {name: value for name, value in fields.items() if value is not None}


def reference_json(reference: Reference) -> dict[str, Any]:
    """The schema's reference object for ``reference``."""
    if isinstance(reference, RecordRef):
        return reference.to_json()
    if isinstance(reference, str):
        return {"uri": reference}
    return dict(reference)


@functools.cache
def agent_action_schema() -> dict[str, Any]:
    """The shipped agent-action JSON Schema, parsed."""
    text = (resources.files("engine.schemas") / "agent_action.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator() -> Any:
    # Built once: compiling the schema costs far more than checking a record.
    # Its patterns match as the broker's record checks match them (RE2: a
    # "$" matches at the end only, not before a last newline as in "re").
    schema = agent_action_schema()
    return linear_validator(jsonschema.validators.validator_for(schema), schema)


def validate(action: Mapping[str, Any]) -> None:
    """Holds ``action`` to the agent-action schema; InvalidAction names the
    first offending field."""
    error = jsonschema.exceptions.best_match(_validator().iter_errors(action))
    if error is not None:
        raise InvalidAction(
            f"not an agent action: {error.json_path}: {error.message}", error.json_path
        )


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """An action ready to send: its topic, key, value and headers."""

    action: dict[str, Any]
    topic: str

    @property
    def action_id(self) -> str:
        return str(self.action["action_id"])

    @property
    def correlation_id(self) -> str:
        return str(self.action["correlation_id"])

    @property
    def key(self) -> bytes:
        return self.correlation_id.encode()

    @property
    def value(self) -> bytes:
        return json.dumps(self.action, separators=(",", ":"), ensure_ascii=False).encode()

    @property
    def headers(self) -> tuple[Header, ...]:
        headers = [(CORRELATION_HEADER, self.key)]
        if "causation_id" in self.action:
            headers.append((CAUSATION_HEADER, str(self.action["causation_id"]).encode()))
        if "context_offsets" in self.action:
            vector = OffsetVector.from_json(self.action["context_offsets"])
            headers.append((CONTEXT_HEADER, vector.to_text().encode()))
        return tuple(headers)


def build_action(
    action_type: str,
    *,
    action_id: str,
    actor: Actor,
    correlation_id: str,
    started_ms: int,
    recorded_ms: int,
    finished_ms: int | None = None,
    tool: Tool | None = None,
    input_ref: Reference | None = None,
    output_ref: Reference | None = None,
    policy: Policy | None = None,
    causation_id: str | None = None,
    context: OffsetVector | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One action in the schema's shape, validated (InvalidAction if not).
    ``extra``: further top-level fields (the schema allows them)."""
    action: dict[str, Any] = dict(extra or {})
    action |= {
        "action_id": action_id,
        "type": action_type,
        "actor": actor.to_json(),
        "correlation_id": correlation_id,
    }
    if tool is not None:
        action["tool"] = tool.to_json()
    if input_ref is not None:
        action["input_ref"] = reference_json(input_ref)
    if output_ref is not None:
        action["output_ref"] = reference_json(output_ref)
    if policy is not None:
        action["policy"] = policy.to_json()
    if causation_id is not None:
        action["causation_id"] = causation_id
    if context is not None:
        action["context_offsets"] = context.to_json()
    timestamps = {"started_ms": started_ms, "recorded_ms": recorded_ms}
    if finished_ms is not None:
        timestamps["finished_ms"] = finished_ms
    action["timestamps"] = timestamps
    validate(action)
    return action
