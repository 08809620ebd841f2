"""Compressed record batches that inflate (or claim to inflate) far beyond
their size: one per Kafka codec, built in well under a second.

Each is a well-formed v2 batch around a records area that is valid for its
codec: zstd as a frame of RLE blocks (4 bytes per 128 KiB), gzip as one
member of repeated deflate blocks with a true trailer, LZ4 as a frame, and
snappy as a raw block or xerial chunks whose length preamble claims 4 GiB.
"""

from __future__ import annotations

import functools
import struct
import zlib

import lz4.frame

from native import _pure
from native.records import CRC_START, HEADER_SIZE, Compression, RecordSpec

GIB = 1 << 30
MIB = 1 << 20

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_BLOCK = 128 * 1024
_XERIAL = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)


def wrap(
    codec: int,
    area: bytes,
    record_count: int = 1,
    *,
    last_offset_delta: int | None = None,
    timestamp: int = 1_700_000_000_000,
) -> bytes:
    """A v2 batch of ``record_count`` records whose records area is ``area``,
    already compressed with ``codec``; the CRC is right."""
    template = bytearray(_pure.encode_batch([RecordSpec(timestamp, b"k", b"v")]))
    batch = template[:HEADER_SIZE] + area
    delta = record_count - 1 if last_offset_delta is None else last_offset_delta
    struct.pack_into(">i", batch, 8, len(batch) - 12)
    struct.pack_into(">h", batch, 21, codec)
    struct.pack_into(">i", batch, 23, delta)
    struct.pack_into(">i", batch, 57, record_count)
    struct.pack_into(">I", batch, 17, _pure.crc32c(bytes(batch[CRC_START:])))
    return bytes(batch)


def zstd_bomb(size: int = 10 * GIB) -> bytes:
    """A zstd frame of RLE blocks of zeros: ``size`` bytes from size / 32 Ki."""
    window = bytes([(17 - 10) << 3])  # a 128 KiB window: blocks may be that large
    blocks = bytearray()
    remaining = size
    while remaining > 0:
        n = min(remaining, _ZSTD_BLOCK)
        remaining -= n
        last = 1 if remaining == 0 else 0
        blocks += (last | (1 << 1) | (n << 3)).to_bytes(3, "little") + b"\x00"
    return _ZSTD_MAGIC + b"\x00" + window + bytes(blocks)


@functools.cache
def gzip_bomb(mebibytes: int = 900) -> bytes:
    """One gzip member of ``mebibytes`` MiB of zeros (about 1 KiB per MiB)."""
    zeros = bytes(MIB)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflater.compress(zeros) + deflater.flush(zlib.Z_SYNC_FLUSH)
    # Once the window holds only zeros, every further MiB deflates alike.
    steady = deflater.compress(zeros) + deflater.flush(zlib.Z_SYNC_FLUSH)
    crc = 0
    for _ in range(mebibytes):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    end = b"\x03\x00"  # an empty final fixed-Huffman block
    trailer = struct.pack("<II", crc, (mebibytes * MIB) & 0xFFFFFFFF)
    return header + first + steady * (mebibytes - 1) + end + trailer


@functools.cache
def lz4_bomb(mebibytes: int = 200) -> bytes:
    """An LZ4 frame of ``mebibytes`` MiB of zeros (LZ4 stops near 250:1)."""
    zeros = bytes(MIB)
    compressor = lz4.frame.LZ4FrameCompressor(block_size=lz4.frame.BLOCKSIZE_MAX4MB)
    parts = [compressor.begin()] + [compressor.compress(zeros) for _ in range(mebibytes)]
    return b"".join([*parts, compressor.flush()])


def snappy_claim(declared: int = 0xFFFFFFFF) -> bytes:
    """A raw snappy block whose preamble declares ``declared`` bytes."""
    preamble = bytearray()
    value = declared
    while value >= 0x80:
        preamble.append((value & 0x7F) | 0x80)
        value >>= 7
    preamble.append(value)
    return bytes(preamble) + b"\x00\x00"  # one empty literal


def xerial_claim(chunks: int = 4) -> bytes:
    """xerial framing whose chunks each claim 4 GiB."""
    chunk = snappy_claim()
    return _XERIAL + (struct.pack(">i", len(chunk)) + chunk) * chunks


BOMBS = {
    "gzip": (Compression.GZIP, gzip_bomb),
    "snappy": (Compression.SNAPPY, snappy_claim),
    "snappy-xerial": (Compression.SNAPPY, xerial_claim),
    "lz4": (Compression.LZ4, lz4_bomb),
    "zstd": (Compression.ZSTD, zstd_bomb),
}


def bomb_batch(name: str) -> bytes:
    codec, build = BOMBS[name]
    return wrap(codec, build())


def vm_hwm_bytes(pid: int | str = "self") -> int:
    """A process's peak resident set size, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")
