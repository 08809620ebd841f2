"""docs/record-batch.md is enough to write a reader and a writer of a batch.

A batch is built here from the document alone: its header from the header
table (offsets, sizes and field names, big-endian as the document says),
its CRC32C over the bytes the table's note names (written from its
definition in tests.docspec, not native's), its records from the Record
layout and the varint rule. Both implementations must validate and decode
it as the document says, and what their ``encode_batch`` writes must parse
by the document's rules.
"""

from __future__ import annotations

import re
import struct
from types import ModuleType
from typing import Any

from native.records import RecordSpec
from tests import docspec

DOC = "record-batch.md"
TEXT = docspec.text(DOC)
HEADER = docspec.table(DOC, "offset", "size", "field", "notes")
SIZES = {1: "b", 2: "h", 4: "i", 8: "q"}
RECORD = next(block for block in docspec.code_blocks(DOC) if block.startswith("length "))
RECORD_FIELDS = [line.split()[:2] for line in RECORD.splitlines() if line.strip()]


def _header_fields() -> list[tuple[str, int, int]]:
    """(field, offset, size) of each fixed field, in the table's order."""
    return [
        (row["field"], int(row["offset"]), int(row["size"]))
        for row in HEADER
        if row["size"].isdigit()
    ]


def _crc_start() -> int:
    (row,) = [row for row in HEADER if row["field"] == "crc"]
    found = re.search(r"of bytes (\d+) \.\. end of batch", row["notes"])
    assert found is not None, row["notes"]
    return int(found.group(1))


def _attribute_bits() -> dict[str, int]:
    """The attribute bits the table's note names: ``3 timestamp type`` ..."""
    (row,) = [row for row in HEADER if row["field"] == "attributes"]
    named = re.findall(r"(?:^|, )(\d) ([a-z ]+?)(?=,|$)", row["notes"])  # not "bits 0-2 codec"
    return {name: int(bit) for bit, name in named}


def test_the_header_table_is_the_size_its_heading_states() -> None:
    stated = re.search(r"## Batch header \((\d+) bytes\)", TEXT)
    assert stated is not None
    fields = _header_fields()
    assert [offset for _, offset, _ in fields] == [
        sum(size for _, _, size in fields[:i]) for i in range(len(fields))
    ]
    assert sum(size for _, _, size in fields) == int(stated.group(1))
    assert _attribute_bits() == {"timestamp type": 3, "transactional": 4, "control": 5}


# -- writing by the document -------------------------------------------------------


def zigzag(value: int) -> bytes:
    """The document's varint: zigzag, 7 bits at a time, least significant
    group first, the high bit set on every byte but the last."""
    number = ((value << 1) ^ (value >> 63)) & (2**64 - 1)
    out = bytearray()
    while True:
        group, number = number & 0x7F, number >> 7
        out.append(group | (0x80 if number else 0))
        if not number:
            return bytes(out)


def doc_record(values: dict[str, Any]) -> bytes:
    """A record as the Record layout lays it out, its length prefix last."""
    body = bytearray()
    for name, kind in RECORD_FIELDS[1:]:
        value: Any = values.get(name)
        if kind in ("varint", "varlong"):
            body += zigzag(value)
        elif kind == "int8":
            body += struct.pack(">b", value)
        elif kind == "bytes":
            body += value or b""
        else:
            assert name == "headers", name  # headerCount times (keyLength, key, valueLength, value)
            for key, header_value in value:
                body += zigzag(len(key)) + key.encode()
                body += zigzag(-1 if header_value is None else len(header_value))
                body += header_value or b""
    assert RECORD_FIELDS[0] == ["length", "varint"]
    return zigzag(len(body)) + bytes(body)


def doc_batch(header: dict[str, int], records: list[bytes]) -> bytearray:
    """Header fields by the table, records after it, batchLength and CRC
    filled in as the table's notes say."""
    fields = _header_fields()
    end = fields[-1][1] + fields[-1][2]
    batch = bytearray(end) + b"".join(records)
    values = {**header, "batchLength": len(batch) - 12, "crc": 0}
    for name, offset, size in fields:
        code = "I" if name == "crc" else SIZES[size]
        struct.pack_into(">" + code, batch, offset, values[name])
    crc_offset = next(offset for name, offset, _ in fields if name == "crc")
    struct.pack_into(">I", batch, crc_offset, docspec.crc32c(batch[_crc_start() :]))
    return batch


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def test_a_batch_built_from_the_document_validates_and_decodes(impl: ModuleType) -> None:
    base_offset, base_timestamp = 1000, 1_760_000_000_000
    specs: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]] = [
        (0, b"k0", b"first", [("trace", b"t1")]),
        (5, None, b"second", []),
        (-3, b"k2", None, [("a", None), ("b", b"")]),
    ]
    records = [
        doc_record(
            {
                "attributes": 0,
                "timestampDelta": delta,
                "offsetDelta": i,
                "keyLength": -1 if key is None else len(key),
                "key": key,
                "valueLength": -1 if value is None else len(value),
                "value": value,
                "headerCount": len(headers),
                "headers": headers,
            }
        )
        for i, (delta, key, value, headers) in enumerate(specs)
    ]
    header = {
        "baseOffset": base_offset,
        "partitionLeaderEpoch": 7,
        "magic": 2,
        "attributes": 1 << _attribute_bits()["transactional"],
        "lastOffsetDelta": len(specs) - 1,
        "baseTimestamp": base_timestamp,
        "maxTimestamp": base_timestamp + 5,
        "producerId": 42,
        "producerEpoch": 3,
        "baseSequence": 9,
        "recordCount": len(specs),
    }
    batch = doc_batch(header, records)

    (validated,) = impl.validate_batches(batch, from_client=False)
    for name, value in header.items():
        assert getattr(validated, _snake(name)) == value, name
    assert validated.batch_length == len(batch) - 12
    decoded = impl.decode_records(batch)
    assert [(r.offset, r.timestamp, r.key, r.value, tuple(r.headers)) for r in decoded] == [
        (base_offset + i, base_timestamp + delta, key, value, tuple(headers))
        for i, (delta, key, value, headers) in enumerate(specs)
    ]


# -- reading by the document ---------------------------------------------------------


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    number, shift = 0, 0
    while True:
        byte = data[at]
        number |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return (number >> 1) ^ -(number & 1), at


def doc_read(batch: bytes) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """A batch's header by the table and its records by the Record layout."""
    header = {}
    for name, offset, size in _header_fields():
        code = "I" if name == "crc" else SIZES[size]
        (header[name],) = struct.unpack_from(">" + code, batch, offset)
    assert header["crc"] == docspec.crc32c(batch[_crc_start() :])
    fields = _header_fields()
    at = fields[-1][1] + fields[-1][2]
    records = []
    for _ in range(header["recordCount"]):
        length, at = read_varint(batch, at)
        end = at + length
        record: dict[str, Any] = {}
        lengths: dict[str, int] = {}
        at += 1  # attributes, int8
        for name, kind in RECORD_FIELDS[2:]:
            if kind in ("varint", "varlong"):
                record[name], at = read_varint(batch, at)
                lengths[name] = record[name]
            elif kind == "bytes":
                size = lengths[name + "Length"]
                record[name] = None if size < 0 else batch[at : at + size]
                at += max(size, 0)
            else:
                headers = []
                for _ in range(record["headerCount"]):
                    key_length, at = read_varint(batch, at)
                    key, at = batch[at : at + key_length].decode(), at + key_length
                    value_length, at = read_varint(batch, at)
                    value = None if value_length < 0 else batch[at : at + value_length]
                    headers.append((key, value))
                    at += max(value_length, 0)
                record[name] = headers
        assert at == end
        records.append(record)
    assert at == len(batch)
    return header, records


def test_what_encode_batch_writes_parses_by_the_document(impl: ModuleType) -> None:
    specs = [
        RecordSpec(1_760_000_000_000, b"key", b"value", (("trace", b"t1"),)),
        RecordSpec(1_760_000_000_007, None, b"", (("none", None),)),
        RecordSpec(1_759_999_999_990, b"", None),
    ]
    batch = bytes(
        impl.encode_batch(specs, base_offset=77, producer_id=5, producer_epoch=1, base_sequence=3)
    )
    header, records = doc_read(batch)
    assert header["batchLength"] == len(batch) - 12
    assert (header["baseOffset"], header["magic"], header["recordCount"]) == (77, 2, 3)
    assert (header["producerId"], header["producerEpoch"], header["baseSequence"]) == (5, 1, 3)
    assert header["lastOffsetDelta"] == 2
    assert header["maxTimestamp"] == max(spec.timestamp for spec in specs)
    for i, (spec, record) in enumerate(zip(specs, records, strict=True)):
        assert record["offsetDelta"] == i
        assert header["baseTimestamp"] + record["timestampDelta"] == spec.timestamp
        assert (record["key"], record["value"]) == (spec.key, spec.value)
        assert record["headers"] == list(spec.headers)
