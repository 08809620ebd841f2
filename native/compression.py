"""Kafka's record-batch compression codecs, shared by both implementations.

Compression is the libraries' job; only Kafka's framing choices live here:
gzip streams, LZ4 *frames*, zstd frames (possibly without a content size), and
snappy either raw or in the xerial "snappy-java" framing some clients write.
"""

from __future__ import annotations

import gzip
import struct
import zlib

import cramjam
import lz4.frame
import zstandard

from native.records import BytesLike, Compression

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = 16  # magic (8) + version (4) + compatible version (4)


def compress(codec: int, data: BytesLike) -> bytes:
    if codec == Compression.GZIP:
        return gzip.compress(data, compresslevel=6, mtime=0)
    if codec == Compression.SNAPPY:
        # Raw snappy, as librdkafka writes it; Java's consumer reads both.
        return bytes(cramjam.snappy.compress_raw(bytes(data)))
    if codec == Compression.LZ4:
        return bytes(lz4.frame.compress(data, block_size=lz4.frame.BLOCKSIZE_MAX64KB))
    if codec == Compression.ZSTD:
        return bytes(zstandard.ZstdCompressor().compress(data))
    raise ValueError(f"no such compression codec: {codec}")


def decompress(codec: int, data: BytesLike) -> bytes:
    """Inflate a batch's records area. Raises ValueError on bad input."""
    try:
        if codec == Compression.GZIP:
            return zlib.decompress(data, wbits=47)  # gzip or zlib header, auto-detected
        if codec == Compression.SNAPPY:
            return _snappy_decompress(bytes(data))
        if codec == Compression.LZ4:
            return bytes(lz4.frame.decompress(data))
        if codec == Compression.ZSTD:
            return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(data))
    except (zlib.error, RuntimeError, zstandard.ZstdError, cramjam.DecompressionError) as exc:
        raise ValueError(f"cannot decompress {Compression(codec).name} data: {exc}") from exc
    raise ValueError(f"no such compression codec: {codec}")


def _snappy_decompress(data: bytes) -> bytes:
    if not data.startswith(_XERIAL_MAGIC):
        return bytes(cramjam.snappy.decompress_raw(data))
    out = bytearray()
    pos = _XERIAL_HEADER
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError("xerial snappy chunk length is cut short")
        (size,) = struct.unpack_from(">i", data, pos)
        pos += 4
        if size < 0 or pos + size > len(data):
            raise ValueError("xerial snappy chunk runs past the data")
        out += cramjam.snappy.decompress_raw(data[pos : pos + size])
        pos += size
    return bytes(out)
