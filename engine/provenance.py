"""Provenance stamping: who wrote a record, as the broker saw it.

A topic with ``tidelog.provenance = stamp`` has the broker add headers to
every record it accepts, after validation and before offsets are assigned:
the authenticated principal, the client id, the listener, the client's
address and the broker's receive time (docs/governance.md, "Provenance").
The stamp's own header names are the broker's: a client's header of one of
those names is removed before the stamp is added, so no producer can pass
off a header of its own as the broker's. Every other header is kept, the
agent memory's ``tidelog.correlation.id``, ``tidelog.causation.id`` and
``tidelog.context`` among them (docs/design/0037).

This module owns the header names and the small value (``Provenance``)
that carries a writer's identity from a connection or an embedded producer
down to the partition that stamps; ``native.stamp_batch`` rewrites the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import native
from engine.authorization import ANONYMOUS
from engine.errors import RecordTooLarge
from native import StampedBatchTooLarge
from native.buffers import BytesLike

PRINCIPAL = "tidelog.principal"
CLIENT_ID = "tidelog.client.id"
LISTENER = "tidelog.listener"
CLIENT_ADDRESS = "tidelog.client.address"
RECEIVED_MS = "tidelog.received.ms"

RESERVED_NAMES = (PRINCIPAL, CLIENT_ID, LISTENER, CLIENT_ADDRESS, RECEIVED_MS)
"""The record headers that are the broker's alone: every name the stamp may
write, also those a given stamp leaves out (an embedded write has no
address), so that no client copy of any of them survives stamping."""

EMBEDDED_LISTENER = "embedded"
"""The listener name of records written through the embedded API."""


@dataclass(frozen=True, slots=True)
class Provenance:
    """Who sent a produce request, as the broker knows it: never what the
    request says of itself, except the client id (a client's own name for
    itself, as Kafka's request header carries it)."""

    principal: str = ANONYMOUS
    listener: str = EMBEDDED_LISTENER
    client_id: str | None = None
    """None: the request carried none (its header is then left out)."""
    address: str | None = None
    """host:port of the peer; None in-process (the header is then left out)."""

    def headers(self, received_ms: int) -> list[tuple[str, bytes]]:
        """The stamp's headers, in a fixed order; values are UTF-8 text."""
        fields = [(PRINCIPAL, self.principal.encode())]
        if self.client_id is not None:
            fields.append((CLIENT_ID, self.client_id.encode()))
        fields.append((LISTENER, self.listener.encode()))
        if self.address is not None:
            fields.append((CLIENT_ADDRESS, self.address.encode()))
        fields.append((RECEIVED_MS, str(received_ms).encode()))
        return fields

    def stamp_size(self) -> int:
        """The most bytes the stamp adds to one record (its headers and the
        longer varints they may need), for producers sizing their batches."""
        encoded = 0
        for name, value in self.headers(LONG_MAX):
            encoded += _varint_size(len(name)) + len(name) + _varint_size(len(value)) + len(value)
        return encoded + 8  # the record's length and header count may each grow a varint


def _varint_size(value: int) -> int:
    """Bytes of a zigzag varint of a non-negative value (Kafka's record fields)."""
    return max(1, ((value << 1).bit_length() + 6) // 7)


LONG_MAX = (1 << 63) - 1


EMBEDDED = Provenance()
"""What an append that names no writer is stamped with (the engine's raw
produce API, called in-process without a principal)."""


def stamp_batches(
    data: BytesLike,
    positions: list[tuple[int, int]],
    provenance: Provenance,
    received_ms: int,
    *,
    max_message_bytes: int,
    max_inflated: int,
) -> bytearray:
    """The validated batches at ``positions`` ((start, size) pairs) stamped,
    one after another. A batch that the stamp takes past
    ``max_message_bytes`` raises RecordTooLarge, as Kafka refuses any batch
    above the topic's limit."""
    fields = provenance.headers(received_ms)
    view = memoryview(data)
    out = bytearray()
    for start, size in positions:
        try:
            out += native.stamp_batch(
                view[start : start + size],
                fields,
                reserved_names=RESERVED_NAMES,
                max_size=max_message_bytes,
                max_inflated=max_inflated,
            )
        except StampedBatchTooLarge as error:
            assert error.found is not None and error.expected is not None
            raise RecordTooLarge(error.found, error.expected) from error
    return out
