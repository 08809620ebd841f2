"""Drives every C entry point with hostile input; run under AddressSanitizer.

    python tests/native/asan_fuzz.py ITERATIONS SEED

Run by test_asan_fuzz.py against an extension built with
-fsanitize=address,undefined: any out-of-bounds read or write, use after
free or undefined behaviour aborts the process, which the test reports.
Typed errors are the expected outcome for bad input and are counted.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import random
import sys
from pathlib import Path
from typing import Any, NamedTuple

from native import _cnative as c
from native import _pure, compression
from native.records import RecordSpec

EXPECTED = (ValueError, TypeError, OverflowError, BufferError)
CAPTURES = Path(__file__).parent.parent / "data" / "librdkafka"


def seeds(rng: random.Random) -> list[bytes]:
    found = [path.read_bytes() for path in sorted(CAPTURES.glob("*.bin"))]
    for codec in range(5):
        specs = [
            RecordSpec(rng.randrange(-(2**40), 2**40), rng.randbytes(8), rng.randbytes(40),
                       (("h", rng.randbytes(4)), ("n", None)))
            for _ in range(rng.randrange(1, 8))
        ]  # fmt: skip
        found.append(c.encode_batch(specs, compression=codec))
        # A batch the log cleaner rewrote: gaps in its offsets and a longer range.
        deltas = sorted(rng.sample(range(64), len(specs)))
        found.append(
            c.encode_batch(specs, compression=codec, offset_deltas=deltas,
                           last_offset_delta=deltas[-1] + rng.randrange(4),
                           base_timestamp=rng.randrange(-(2**62), 2**62))
        )  # fmt: skip
    return found


def encode_hostile(rng: random.Random) -> None:
    """encode_batch with offsets and timestamps from every edge the format has."""
    ints = [0, 1, -1, 2**31 - 1, 2**31, -(2**31), 2**63 - 1, -(2**63), 2**64]
    edges: list[Any] = [*ints, None]  # out of range on purpose: the typed errors are expected
    count = rng.randrange(1, 6)
    specs = [RecordSpec(rng.choice(ints[:8]), None, b"v") for _ in range(count)]
    deltas: Any = rng.choice(
        [None, sorted(rng.sample(range(2**31), count)), [rng.choice(edges) for _ in range(count)],
         list(range(rng.randrange(8)))]
    )  # fmt: skip
    c.encode_batch(
        specs,
        offset_deltas=deltas,
        last_offset_delta=rng.choice(edges),
        base_timestamp=rng.choice(edges),
    )


def records_hostile(rng: random.Random) -> None:
    """encode_records (send_many) with values, keys, cuts and headers from the edges."""
    pool: list[Any] = [None, b"", b"v" * rng.randrange(300), "t\u00e9", bytearray(b"ab"), 7]
    count = rng.randrange(0, 12)
    values = [rng.choice(pool[:5]) if rng.random() < 0.97 else 7 for _ in range(count)]
    keys: Any = rng.choice([None, [rng.choice(pool[:5]) for _ in range(count)], [b"k"]])
    headers: Any = rng.choice([(), [("h", b"v"), ("n", None)], [("h",)], [(b"h", b"v")]])
    batch, _ = c.encode_records(
        values if rng.random() < 0.9 else tuple(values),
        keys,
        timestamp=rng.choice([0, -1, 2**63 - 1, -(2**63), 2**63]),
        start=rng.choice([0, 1, count - 1, count, -1]),
        max_bytes=rng.choice([-1, 0, 61, 100, 2**31 - 1, 2**63 - 1]),
        headers=headers,
        compression=rng.randrange(6),
        producer_id=rng.choice([-1, 2**40]),
        base_sequence=rng.choice([-1, 0, 2**31 - 1]),
    )
    c.validate_batches(batch)


def entries_hostile(rng: random.Random) -> None:
    """encode_entries (an object's data region) with offsets, payloads and
    block sizes from the edges; join_parts on what it returns."""
    offsets = [0, 1, 2**31, 2**32 + 5, 2**62, 2**63 - 1, -(2**63), 2**63]
    runs: list[Any] = []
    for stream in range(rng.randrange(0, 4)):
        base = rng.choice(offsets[:6])
        batches: list[Any] = []
        for _ in range(rng.randrange(0, 6)):
            end = base + rng.choice([1, 2, 0, -1, 2**32 + 1])
            payload: Any = rng.choice(
                [b"", rng.randbytes(rng.randrange(100)), memoryview(b"xy"), 3]
            )
            if rng.random() < 0.5:
                # Either side of the 4 KiB from which a payload is a part of
                # its own, and past the 64 KiB from which the copies run
                # without the GIL.
                size = rng.choice([0, 1, 4095, 4096, 4097, 70_000])
                payload = rng.choice([bytes, bytearray, lambda n: memoryview(bytearray(n))])(size)
            batches.append((base, end, payload) if rng.random() < 0.95 else (base, end))
            base = end if rng.random() < 0.9 else end + 1
        runs.append((stream, batches))
    parts, *_ = c.encode_entries(
        runs,
        rng.choice([-1, 0, 1, 16, 100, 2**63 - 1]),
        with_spans=rng.random() < 0.5,
        copy_small=rng.random() < 0.8,
    )
    c.join_parts(parts if rng.random() < 0.9 else [*parts, 1])


def mutate(rng: random.Random, data: bytes) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        action = rng.randrange(6)
        if action == 0 and buffer:
            buffer[rng.randrange(len(buffer))] ^= 1 << rng.randrange(8)
        elif action == 1:
            del buffer[rng.randrange(len(buffer) + 1) :]
        elif action == 2:
            buffer += rng.randbytes(rng.randrange(1, 64))
        elif action == 3 and len(buffer) >= 12:
            # A hostile batchLength, record count or varint byte.
            at = rng.choice([8, 57, 61, 62, 63, rng.randrange(len(buffer) - 4)])
            value = rng.choice([0, 1, 48, 49, 0x7FFFFFFF, -1, -(2**31), rng.randrange(2**31)])
            buffer[at : at + 4] = value.to_bytes(4, "big", signed=True)
        elif action == 4 and buffer:
            at = rng.randrange(len(buffer))
            buffer[at : at + 8] = b"\xff" * 8
        else:
            buffer = bytearray(rng.randbytes(rng.randrange(0, 200)))
    return bytes(buffer)


def with_crc(data: bytes) -> bytes:
    """The first batch's CRC made right again, so the record walk is reached."""
    if len(data) < 61:
        return data
    buffer = bytearray(data)
    end = min(len(buffer), 12 + max(0, int.from_bytes(buffer[8:12], "big", signed=True)))
    buffer[17:21] = c.crc32c(bytes(buffer[21:end])).to_bytes(4, "big")
    return bytes(buffer)


def walk_hostile(rng: random.Random, corpus: list[bytes]) -> None:
    """A client's batch whose records (inside the compression) are hostile,
    under a right CRC, through the record walk with random rules."""
    seed = rng.choice(corpus)
    codec = rng.randrange(5)
    area = mutate(rng, seed[61:]) if len(seed) > 61 else rng.randbytes(40)
    packed = area if codec == 0 else compression.compress(codec, area)
    header = bytearray(seed[:61] if len(seed) >= 61 else bytes(61))
    header[8:12] = (49 + len(packed)).to_bytes(4, "big")
    header[16] = 2
    header[21:23] = codec.to_bytes(2, "big")
    count = rng.choice([1, 2, 7, rng.randrange(1, 64), 2**31 - 1])
    header[23:27] = (count - 1).to_bytes(4, "big")
    header[57:61] = count.to_bytes(4, "big")
    data = with_crc(bytes(header) + packed)
    with contextlib.suppress(EXPECTED):
        stamp_hostile(rng, data)
    with contextlib.suppress(EXPECTED):  # the format walk alone, as a Produce partition's
        c.validate_batches(data, one_batch=True)
    bound = rng.choice([None, -(2**63), 0, 2**40, 2**63 - 1])
    c.validate_batches(
        data,
        require_keys=rng.random() < 0.5,
        min_timestamp=bound,
        max_timestamp=rng.choice([None, 2**63 - 1, 2**41]),
        max_inflated=rng.choice([0, 1, 64, 1 << 20]),
    )


def zigzag(value: int) -> bytes:
    """``value`` as a zigzag varint (an int32's is the same as an int64's)."""
    out = bytearray()
    _pure._write_varint(out, value)
    return bytes(out)


def edge_varint(rng: random.Random, max_bytes: int, right: int) -> bytes:
    """Mostly ``right``; else a value from the edges, an overlong zero of
    up to max_bytes + 2 bytes, or continuation bytes never terminated."""
    shape = rng.randrange(12)
    if shape == 0:
        edges = [-1, -2, 2**31 - 1, -(2**31), 2**40, -(2**63), 2**63 - 1]
        return zigzag(rng.choice(edges if max_bytes == 10 else edges[:4]))
    if shape == 1:
        return b"\x80" * rng.randrange(1, max_bytes + 3) + b"\x00"
    if shape == 2:
        return b"\xff" * rng.randrange(1, max_bytes + 3)
    return zigzag(right)


def edge_bytes(rng: random.Random, payload: bytes) -> bytes:
    """A length-prefixed field whose length is mostly its own."""
    if rng.randrange(10) == 0:
        claimed = rng.choice([-1, -2, 0, 2**31 - 1, -(2**31), len(payload) + 1])
        return zigzag(claimed) + (b"" if claimed == -1 else payload)
    return zigzag(len(payload)) + payload


KEYS = [b"", b"h", b"abcdefgh", b"abcdefg\xc3\xa9", b"abcdefghijklmno\xc3", b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80", b"abcdefghijklmnop"]  # fmt: skip
"""Header keys around the walk's eight-bytes-at-a-time UTF-8 check."""


def edge_record(rng: random.Random, index: int) -> bytes:
    """One record, its length first, each field mostly right and else from
    the edges of what a varint or a length can say; sometimes cut short."""
    headers = [
        edge_bytes(rng, rng.choice(KEYS) if rng.random() < 0.8 else rng.randbytes(9))
        + edge_bytes(rng, rng.randbytes(rng.randrange(4)))
        for _ in range(rng.randrange(4))
    ]
    body = b"".join(
        [
            bytes([rng.randrange(256)]),
            edge_varint(rng, 10, rng.randrange(-5, 5)),
            edge_varint(rng, 5, index),
            edge_bytes(rng, rng.randbytes(rng.randrange(10))),
            edge_bytes(rng, rng.randbytes(rng.randrange(10))),
            edge_varint(rng, 5, len(headers)),
            *headers,
        ]
    )
    if rng.randrange(10) == 0:
        body = body[: rng.randrange(len(body) + 1)]
    return edge_varint(rng, 5, len(body)) + body


def edge_walk(rng: random.Random, corpus: list[bytes]) -> None:
    """A client's batch of records built from the format's edges, in a
    buffer of exactly its size (a ctypes array of more than 16 bytes is
    allocated alone, with no trailing NUL as a bytes object has and no
    spare room as a bytearray or an array has, so that a read one byte
    past the end is seen), as a Produce partition's and with random rules."""
    count = rng.randrange(1, 5)
    area = b"".join(edge_record(rng, i) for i in range(count))
    codec = rng.choice([0, 0, 0, rng.randrange(1, 5)])
    packed = area if codec == 0 else compression.compress(codec, area)
    header = bytearray(rng.choice(corpus)[:61].ljust(61, b"\0"))
    header[0:8] = bytes(8)
    header[8:12] = (49 + len(packed)).to_bytes(4, "big")
    header[16] = 2
    header[21:23] = codec.to_bytes(2, "big")
    header[23:27] = (count - 1).to_bytes(4, "big")
    header[57:61] = (count + rng.choice([0] * 8 + [-1, 1])).to_bytes(4, "big", signed=True)
    batch = with_crc(bytes(header) + packed)
    exact = (ctypes.c_char * len(batch)).from_buffer_copy(batch)
    with contextlib.suppress(EXPECTED):
        c.validate_batches(exact, one_batch=True)
    with contextlib.suppress(EXPECTED):
        c.decode_records(exact)
    c.validate_batches(
        exact,
        require_keys=rng.random() < 0.5,
        min_timestamp=rng.choice([None, -(2**63), 0]),
        max_timestamp=rng.choice([None, 2**63 - 1, 2**41]),
        max_inflated=rng.choice([0, 64, 1 << 20]),
    )


def stamp_hostile(rng: random.Random, data: bytes) -> None:
    """stamp_batch is given validated batches, but must stay in bounds on any."""
    stamp = [("tidelog.principal", rng.randbytes(rng.randrange(12))), ("tidelog.x", None)]
    c.stamp_batch(
        data,
        stamp,
        reserved_names=rng.choice([["tidelog.principal", "tidelog.x"], [], [""], ["h"] * 3]),
        max_size=rng.choice([0, 61, 1 << 20, 2**63 - 1]),
        max_inflated=rng.choice([0, 64, 1 << 20]),
    )


def wal_hostile(rng: random.Random, data: bytes) -> None:
    """frame_wal_records with fields from the edges; stamp_wal_records on any
    bytes as a frame (the writer only stamps frames the framer made)."""
    edges = [0, 1, 254, 255, 2**32, 2**63 - 1, 2**64 - 1, 2**64, -1, -(2**63) - 1]
    appends = [
        (
            rng.choice([data, b"", memoryview(data)[1:], bytearray(3), "text"]),
            rng.choice(edges),
            rng.choice(edges),
            rng.choice(edges),
            rng.choice([1, 7, 254, 0, 255, 2**70]),
            None,
            rng.choice([b"", b"px", 1]),
            rng.choice([None, 0, 2**32 - 1, 2**32, -1]),
        )[: 8 if rng.random() < 0.95 else 5]
        for _ in range(rng.randrange(0, 5))
    ]
    c.frame_wal_records(appends, rng.choice([-1, 0, 40, 1 << 20, 2**63 - 1]))
    frame = bytearray(data)
    c.stamp_wal_records(
        frame,
        rng.randrange(-1, len(frame) + 2),
        rng.choice([-(2**63), 0, 44, 100, 2**63 - 1]),
        rng.choice([1, 2**64 - 1]),
        rng.choice([0, 2**63 - 1]),
        rng.choice([0, 1, 2, 255]),
        tuple,
    )
    framed = c.frame_wal_records([(data, 0, 0, 0, 1, None, b"", None)] * 3, 1 << 20)
    c.stamp_wal_records(framed, 0, rng.randrange(0, len(framed) + 1), 1, 32, 1, tuple)


def place_hostile(rng: random.Random, data: bytes) -> None:
    """place_wal_record with fields from the edges and addresses of any type
    and length; what the C places, the twin places byte for byte."""
    edges: list[Any] = [0, 1, 255, 256, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 2**64,
                        -1, -(2**63), True, None, 1.0, "1"]  # fmt: skip
    address = rng.choice(
        [data[:24], data[:23], data[:25], bytes(24), bytearray(24), memoryview(bytes(24)), "x" * 24]
    )
    args = (address, *(rng.choice(edges) for _ in range(5)))[: 6 if rng.random() < 0.95 else 5]
    outcomes = []
    for impl in (c, _pure):
        try:
            outcomes.append(impl.place_wal_record(*args))
        except EXPECTED as error:
            outcomes.append(type(error))
    if outcomes[0] != outcomes[1]:
        raise AssertionError(f"the C and the twin place {args!r} differently: {outcomes!r}")
    if isinstance(outcomes[0], type):
        raise outcomes[0]("refused alike")  # counted with the other typed refusals


class _Stored(NamedTuple):
    base_offset: int
    end_offset: int
    payload: object
    crc: int | None


def slice_hostile(rng: random.Random, data: bytes) -> None:
    """ByteSlice made, indexed, sliced (nested, strided), compared, hashed,
    exported and dropped with bounds from the edges; untracked_view and
    untracked_record on views of every shape: every byte read stays inside
    the owner, whose export is released with the last slice."""
    edges = [0, 1, -1, len(data), len(data) + 1, -len(data) - 1, 2**31, 2**62, -(2**62),
             2**63 - 1, -(2**63), 2**64, None]  # fmt: skip
    owner: Any = rng.choice([data, bytearray(data), b"", bytearray()])
    try:
        whole = c.ByteSlice(owner, *(rng.choice(edges[:-1]) for _ in range(rng.randrange(3))))
    except EXPECTED:
        whole = c.ByteSlice(owner)
    for _ in range(4):
        key: Any = rng.choice(edges[:-1])
        if rng.random() < 0.6:
            key = slice(
                rng.choice(edges), rng.choice(edges), rng.choice([None, 1, 2, -1, -3, 2**63])
            )
        with contextlib.suppress(IndexError, *EXPECTED):
            part = whole[key]
            if not isinstance(part, int):
                bytes(part)
                whole = part if rng.random() < 0.5 else whole
    other = rng.choice([data, memoryview(data).cast("c"), memoryview(data[:1]).cast("B", shape=[]),
                        bytearray(data), whole, "x", None])  # fmt: skip
    _ = (whole == other, whole != other, whole.hex(), whole.tobytes(), len(whole), repr(whole))
    with contextlib.suppress(TypeError):
        hash(whole)
    with memoryview(whole) as exported:
        bytes(exported[::-1])
    views = [memoryview(owner)[rng.randrange(len(owner) + 1) :], memoryview(b"abcd").cast("I"),
             memoryview(data)[::2], memoryview(whole),
             memoryview(bytearray(data)).toreadonly()]  # fmt: skip
    view = rng.choice(views)
    record = c.untracked_record(_Stored, 0, 1, view, rng.choice([None, 7, (1, [2]), {}]))
    bytes(c.untracked_view(view))
    c.crc32c(record.payload)
    del whole, record, views, view, other
    part = None
    if type(owner) is bytearray:
        try:
            owner.extend(b"x")
        except BufferError as error:
            raise AssertionError("a slice's export outlived the slice") from error


class _Dicted(tuple):  # type: ignore[type-arg]  # a tuple subclass with a __dict__
    pass


class _Unnamed(tuple):  # type: ignore[type-arg]  # bare, but with no _fields
    __slots__ = ()


def _broken_items(rng: random.Random) -> Any:
    """Items that fail part way through being read: the tuple built so far
    is dropped."""
    yield from range(rng.randrange(4))
    raise ValueError("items cut off")


def _holds_tracked(item: object) -> bool:
    """Whether an object the collector does not track holds, at any depth,
    one it does: an untracked container must hold none."""
    if not isinstance(item, tuple):
        return False
    return any(gc.is_tracked(inner) or _holds_tracked(inner) for inner in item)


def nested_hostile(rng: random.Random) -> None:
    """untracked_record and untracked_tuple nested inside each other with
    items of every kind (untracked and tracked records, exact tuples, lists,
    dicts, views, a tuple subclass with a __dict__, one without _fields, a
    struct sequence), the classes refused and items cut off part way: every
    reference is dropped once (ASan sees a double free or a leak's use),
    and nothing untracked holds a tracked object, however deep."""
    made: list[Any] = [None, 7, b"x", "s", ()]
    refused = 0
    for _ in range(rng.randrange(2, 12)):
        pool = [*made, [1], {"a": 1}, memoryview(b"abcd"), _Dicted((1,)), _Unnamed((1,)),
                _Stored(0, 1, b"x", None), os.stat(".")]  # fmt: skip
        cls: Any = rng.choice([_Stored, _Stored, _Stored, _Dicted, _Unnamed, os.stat_result, 5])
        items = [rng.choice(pool) for _ in range(rng.choice([4, 4, 4, 3, 5]))]
        source: Any = rng.choice(
            [[rng.choice(pool) for _ in range(rng.randrange(6))], _broken_items(rng), 5]
        )
        try:
            if rng.random() < 0.5:
                made.append(c.untracked_record(cls, *items))
            else:
                made.append(c.untracked_tuple(source))
        except EXPECTED:
            refused += 1
            continue
        if not gc.is_tracked(made[-1]) and _holds_tracked(made[-1]):
            raise AssertionError(f"untracked, holding a tracked object: {made[-1]!r}")
    if rng.random() < 0.05:
        gc.collect()
    if refused:
        raise TypeError(f"{refused} classes or items refused")  # counted with the others


def crc_to_the_allocations_end(rng: random.Random) -> None:
    """Each CRC32C implementation the CPU runs over buffers that end where
    their allocation ends (ctypes asks malloc for exactly that many bytes;
    a bytes object keeps a NUL past its last byte), at every length to
    4 KiB and past, from starts of 0 to 63 bytes: a load past the end, an
    8-byte word's included, is ASan's to see."""
    data = rng.randbytes(4096 + 80)
    for length in (*range(4097), 4159, 1 << 16, (1 << 16) + 13):
        exact = ctypes.create_string_buffer(length)
        ctypes.memmove(exact, data, min(length, len(data)))
        whole = memoryview(exact).cast("B")
        for skip in {0, 1, 7, 63} if length > 63 else {0}:
            view = whole[skip:]
            expected = _pure.crc32c(bytes(view), length)
            for backend in c.crc32c_backends():
                assert c.crc32c_with(backend, view, length) == expected, (backend, length)


def main() -> int:
    iterations, seed = int(sys.argv[1]), int(sys.argv[2])
    print(f"extension {c.__file__}", flush=True)  # which build the sanitizers watch
    rng = random.Random(seed)
    crc_to_the_allocations_end(rng)
    corpus = seeds(rng)
    # nested_hostile's full collections are for what the fuzz makes; the
    # imported packages' objects (some 17,000, all made before the loop)
    # are set aside, which each collection would otherwise walk again.
    gc.freeze()
    errors = 0
    for _ in range(iterations):
        data = mutate(rng, rng.choice(corpus))
        for function in (c.scan_batches, c.validate_batches, c.decode_records, c.crc32c):
            try:
                function(data)
            except EXPECTED:
                errors += 1
        try:
            c.validate_batches(data, from_client=False)
        except EXPECTED:
            errors += 1
        # A Produce partition's framing: the second batch (or its cut-off
        # start, a tail dropped after the first, or a bare frame) right
        # behind the first, framed alone and validated.
        second = mutate(rng, rng.choice(corpus))[: rng.randrange(80)]
        for frame in (
            c.produce_batch_size,
            lambda d: c.produce_batch_size(d, allow_zstd=False),
            lambda d: c.validate_batches(d, one_batch=True),
        ):
            try:
                frame(data + second)
            except EXPECTED:
                errors += 1
        try:
            stamp_hostile(rng, data)
        except EXPECTED:
            errors += 1
        try:
            wal_hostile(rng, data)
        except EXPECTED:
            errors += 1
        try:
            place_hostile(rng, data)
        except EXPECTED:
            errors += 1
        try:
            slice_hostile(rng, data)
        except EXPECTED:
            errors += 1
        try:
            if rng.random() < 0.3:  # a third of the time: the walk doubles an iteration's cost
                walk_hostile(rng, corpus)
        except EXPECTED:
            errors += 1
        try:
            if rng.random() < 0.3:
                edge_walk(rng, corpus)
        except EXPECTED:
            errors += 1
        try:  # the consumer's shape: a caller's tuple type, offsets and control batches skipped
            c.decode_records(
                data,
                record_type=tuple,
                prefix=("topic", rng.randrange(8)),
                min_offset=rng.randrange(-2, 40),
                skip_control=rng.random() < 0.5,
            )
        except EXPECTED:
            errors += 1
        try:  # the table writer's shape: the records as column buffers
            c.decode_columns(
                data,
                min_offset=rng.randrange(-2, 40),
                skip_control=rng.random() < 0.5,
                max_inflated=rng.choice([0, 64, 1 << 20]),
            )
        except EXPECTED:
            errors += 1
        try:
            encode_hostile(rng)
        except EXPECTED:
            errors += 1
        try:
            c.rewrite_batch(bytearray(data), rng.randrange(len(data) + 2), 7, 3, 1)
        except EXPECTED:
            errors += 1
        try:  # a CreateTime topic's rewrite: the LogAppendTime mark cleared
            c.rewrite_batch(bytearray(data), rng.randrange(len(data) + 2), 7, 3, None, True)
        except EXPECTED:
            errors += 1
        try:
            records_hostile(rng)
        except EXPECTED:
            errors += 1
        try:
            entries_hostile(rng)
        except EXPECTED:
            errors += 1
        try:
            nested_hostile(rng)
        except EXPECTED:
            errors += 1
    print(f"{iterations} inputs, {errors} typed errors, no crash")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
