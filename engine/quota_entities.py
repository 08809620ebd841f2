"""Client quotas as Kafka keeps them (its ClientQuotaControlManager): rate
limits on entities made of a user, a client id, or both, each name or the
entity type's default (a null name). They live in the catalog, so a
restart or a fresh machine on the same bucket keeps them; the server
enforces the byte rates (engine/server/quotas.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from engine.errors import EngineError
from engine.protocol.kafka_code import KafkaCode

USER = "user"
CLIENT_ID = "client-id"
ENTITY_TYPES = (USER, CLIENT_ID)

PRODUCER_BYTE_RATE = "producer_byte_rate"
CONSUMER_BYTE_RATE = "consumer_byte_rate"
REQUEST_PERCENTAGE = "request_percentage"
CONTROLLER_MUTATION_RATE = "controller_mutation_rate"
KEYS: Mapping[str, type] = {
    PRODUCER_BYTE_RATE: int,
    CONSUMER_BYTE_RATE: int,
    REQUEST_PERCENTAGE: float,
    CONTROLLER_MUTATION_RATE: float,
}
"""The quota keys of user and client-id entities, with Kafka's types
(QuotaConfig: the byte rates are longs, the others doubles)."""

Entity = tuple[tuple[str, str | None], ...]
"""(entity type, name or None for the default), sorted by type, each type
once."""


class InvalidClientQuota(EngineError):
    """An entity or a quota Kafka would refuse (INVALID_REQUEST)."""

    code = KafkaCode.INVALID_REQUEST


def entity_of(parts: list[tuple[str, str | None]]) -> Entity:
    """The entity of a request's (type, name) parts, checked as Kafka's
    ClientQuotaControlManager checks it."""
    if not parts:
        raise InvalidClientQuota("Invalid empty client quota entity")
    seen: dict[str, str | None] = {}
    for entity_type, name in parts:
        if entity_type not in ENTITY_TYPES:
            raise InvalidClientQuota(f"Unhandled client quota entity type: {entity_type}")
        if entity_type in seen:
            raise InvalidClientQuota(f"Duplicate {entity_type} entity type")
        if name == "":
            raise InvalidClientQuota(f"Empty {entity_type} not supported")
        seen[entity_type] = name
    return tuple(sorted(seen.items()))


_LONG_MAX = float(2**63 - 1)
"""Java's Long.MAX_VALUE as the double Kafka compares a quota with."""
_FRACTION_TOLERANCE = 1e-6
"""What Kafka's getErrorForIntegralQuotaValue lets pass as a whole number."""


def check_quota(key: str, value: float) -> None:
    """Refuses an unknown key, or a value its type or Kafka's bounds refuse
    (Kafka's ClientQuotaControlManager.validateQuotaKeyValue, except that a
    NaN, which compares false with every bound there, is refused here)."""
    kind = KEYS.get(key)
    if kind is None:
        raise InvalidClientQuota(f"Invalid configuration key {key}")
    # The embedded API's caller may pass any object: the wire's is a double
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidClientQuota(f"Quota {key} must be a number, not {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int past every double
        raise InvalidClientQuota(f"Proposed value for {key} is too large for a DOUBLE.") from None
    if not value > 0:
        raise InvalidClientQuota(f"Quota {key} must be greater than 0")
    if kind is int:
        # infinity included: a rate in bytes is a long
        if value > _LONG_MAX:
            raise InvalidClientQuota(f"Proposed value for {key} is too large for a LONG.")
        if abs(math.fmod(value, 1.0)) > _FRACTION_TOLERANCE:
            raise InvalidClientQuota(f"{key} cannot be a fractional value.")


def entity_to_wire(entity: Entity) -> list[list[str | None]]:
    return [[entity_type, name] for entity_type, name in entity]


def entity_from_wire(raw: list[Any]) -> Entity:
    return tuple((str(entity_type), name) for entity_type, name in raw)


Alteration = tuple[Entity, dict[str, float | None]]
"""An entity's quotas to set (a value) or remove (None)."""


def client_quotas_record(alterations: Sequence[Alteration]) -> list[Any]:
    """The catalog record of one request's alterations
    (docs/engine-format.md): ``client_quotas`` for one entity,
    ``client_quotas_many`` for more."""
    if len(alterations) == 1:
        [(entity, changes)] = alterations
        return ["client_quotas", entity_to_wire(entity), changes]
    return ["client_quotas_many", [[entity_to_wire(e), changes] for e, changes in alterations]]


class ClientQuotas:
    """The quotas in force, by entity, over the catalog's copy of them."""

    def __init__(
        self,
        state: Callable[[], Mapping[Entity, Mapping[str, float]]],
        write: Callable[[list[Alteration]], None],
    ) -> None:
        """``write`` records alterations of one or more entities as one
        catalog record."""
        self._state = state
        self._write = write
        self.version = 0
        """Bumped on every change: the server's enforcement measures afresh."""
        self.byte_rates = self._any_byte_rate()
        """Whether any entity has a byte-rate quota (one check per request)."""
        self.request_rates = self._any(REQUEST_PERCENTAGE)
        """Whether any entity has a request_percentage quota."""

    @property
    def state(self) -> Mapping[Entity, Mapping[str, float]]:
        """The quotas by entity: replaced on each change, never changed in
        place, so a reader on another thread sees one whole state."""
        return self._state()

    def entities(self) -> dict[Entity, dict[str, float]]:
        """A copy of every entity's quotas."""
        return {entity: dict(quotas) for entity, quotas in self.state.items()}

    def alter(self, entity: Entity, changes: Mapping[str, float | None]) -> None:
        """Sets (a value) or removes (None) quotas of ``entity``, as one
        catalog record; raises InvalidClientQuota for what Kafka refuses."""
        self.alter_many([(entity, changes)])

    def alter_many(self, alterations: Sequence[tuple[Entity, Mapping[str, float | None]]]) -> None:
        """Alters the quotas of several entities as one catalog record, as
        Kafka's controller writes one AlterClientQuotas' records in one
        atomic batch: after a crash, and to any reader meanwhile, all of
        them are in force or none is. Raises InvalidClientQuota for what
        Kafka refuses, before anything is written."""
        checked: list[Alteration] = []
        for entity, changes in alterations:
            for key, value in changes.items():
                check_quota(key, 1.0 if value is None else value)
            floats = {k: None if v is None else float(v) for k, v in changes.items()}
            checked.append((entity_of(list(entity)), floats))
        if not checked:
            return
        self._write(checked)
        self.version += 1
        self.byte_rates = self._any_byte_rate()
        self.request_rates = self._any(REQUEST_PERCENTAGE)

    def _any(self, key: str) -> bool:
        return any(key in quotas for quotas in self.state.values())

    def _any_byte_rate(self) -> bool:
        return any(
            PRODUCER_BYTE_RATE in quotas or CONSUMER_BYTE_RATE in quotas
            for quotas in self.state.values()
        )
