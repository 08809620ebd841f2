"""Struct entries encoded from a template instead of a walk of the schema.

A response that answers many items alike (a Fetch's partitions with
nothing new, a Produce's one accepted partition) spends most of its
encoding walking the same schema for each. Where an entry is a head of
plain numbers followed by fields that are the same for every entry meant
(no records, no errors listed, no tagged fields), its bytes are the head
packed, then a tail encoded once. The tail is taken from an entry encoded
through the schema and checked against a second one with other numbers, so
a version whose layout differed fails loudly when its template is made,
rather than answering wrong bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from engine.protocol.encoder import Sink, Writer, uvarint

_PROBES = (0x5A6B7C8D, 0x1234, 0x0102030405060708, 0x1112131415161718, 0x2122232425262728)
"""Numbers whose bytes appear nowhere else in an entry: the first probe."""
_OTHERS = (7, 0, -1, -1, -1)


class Template(NamedTuple):
    whole: struct.Struct
    """Packs an entry whole: the head's numbers, then ``tail``."""
    tail: bytes


def template(
    write: Writer, head: struct.Struct, fields: Callable[..., Mapping[str, Any]]
) -> Template:
    """The template of entries that ``write`` encodes from
    ``fields(*numbers)`` (the entry as the schema's fields) and that start
    with ``head``'s numbers packed. ``head`` holds at most five numbers, of
    the types of ``>ihqqq`` in that order or wider."""
    count = len(head.unpack(bytes(head.size)))

    def encoded(numbers: tuple[int, ...]) -> bytes:
        sink = Sink()
        write(sink, fields(*numbers))
        return b"".join(sink.finish())

    probe, other = _PROBES[:count], _OTHERS[:count]
    first = encoded(probe)
    if not first.startswith(head.pack(*probe)):
        raise AssertionError(f"an entry does not start with {head.format}: {first.hex()}")
    tail = first[head.size :]
    if head.pack(*other) + tail != encoded(other):
        raise AssertionError(f"an entry has no fixed tail after {head.format}")
    return Template(struct.Struct(f"{head.format}{len(tail)}s"), tail)


class RecordsTemplate(NamedTuple):
    """Entries whose last field but their tagged fields is record data:
    ``head`` packs the numbers and ``middle``, then come the records'
    length (int32, or a varint of the length + 1 if ``flexible``), the
    records, and ``trailer``."""

    head: struct.Struct
    middle: bytes
    flexible: bool
    trailer: bytes


_RECORD_PROBES = (b"\xee" * 5, b"\xdd" * 300)
"""Record data of a one-byte and a two-byte varint length."""


def records_template(
    write: Writer, head: struct.Struct, fields: Callable[..., Mapping[str, Any]]
) -> RecordsTemplate:
    """The template of entries that ``write`` encodes from
    ``fields(*numbers, records=[data])`` (as ``template``, with records):
    taken from an entry with a probe's records, checked against another
    entry with other numbers and a longer probe, so a layout that differs
    fails here, not in an answer."""
    count = len(head.unpack(bytes(head.size)))

    def encoded(numbers: tuple[int, ...], data: bytes) -> bytes:
        sink = Sink()
        write(sink, fields(*numbers, records=[data]))
        return b"".join(sink.finish())

    probe, other = _PROBES[:count], _OTHERS[:count]
    short, long = _RECORD_PROBES
    first = encoded(probe, short)
    at = first.find(short)
    if not first.startswith(head.pack(*probe)) or at < 0:
        raise AssertionError(f"an entry with records is not as expected: {first.hex()}")
    trailer = first[at + len(short) :]
    flexible = first[at - 1] == len(short) + 1  # a varint of the length + 1
    prefix = 1 if flexible else 4
    middle = first[head.size : at - prefix]
    made = RecordsTemplate(struct.Struct(f"{head.format}{len(middle)}s"), middle, flexible, trailer)
    length = _uvarint_bytes(len(long) + 1) if flexible else struct.pack(">i", len(long))
    if made.head.pack(*other, middle) + length + long + trailer != encoded(other, long):
        raise AssertionError(f"an entry with records has no fixed middle after {head.format}")
    return made


def _uvarint_bytes(value: int) -> bytes:
    out = bytearray()
    uvarint(out, value)
    return bytes(out)
