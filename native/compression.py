"""Kafka's record-batch compression codecs, shared by both implementations.

Compression is the libraries' job; only Kafka's framing choices live here:
gzip streams, LZ4 *frames*, zstd frames (possibly without a content size), and
snappy either raw or in the xerial "snappy-java" framing some clients write.

Inflation is always bounded: a batch of a few hundred KiB can claim (snappy's
length preamble, a zstd frame's content size) or produce (gzip, lz4, zstd)
gigabytes. ``decompress`` stops at ``limit`` bytes and raises
``InflationLimit``: the streaming decompressors are driven in steps of at
most ``_STEP`` bytes until the output passes the limit (a step, not the
limit, is what they allocate up front), and a declared length is read
before anything is allocated.
"""

from __future__ import annotations

import gzip
import struct
import threading
import zlib

import cramjam
import lz4.frame
import zstandard

from native.buffers import BytesLike
from native.records import Compression

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = 16  # magic (8) + version (4) + compatible version (4)
_STEP = 256 * 1024
"""Output asked of a streaming decompressor per call: what it allocates up front."""
_ZSTD_UNKNOWN = zstandard.CONTENTSIZE_UNKNOWN
_local = threading.local()  # a ZstdDecompressor is not thread-safe, and costs to create


def _zstd() -> zstandard.ZstdDecompressor:
    decompressor: zstandard.ZstdDecompressor | None = getattr(_local, "zstd", None)
    if decompressor is None:
        decompressor = _local.zstd = zstandard.ZstdDecompressor()
    return decompressor


class InflationLimit(ValueError):
    """The data inflates (or claims to inflate) past the caller's limit."""

    def __init__(self, codec: int, limit: int, found: int) -> None:
        super().__init__(
            f"{Compression(codec).name} data inflates past the limit of {limit} bytes "
            f"({found} bytes or more)"
        )
        self.limit = limit
        self.found = found


def compress(codec: int, data: BytesLike) -> bytes:
    if codec == Compression.GZIP:
        return gzip.compress(data, compresslevel=6, mtime=0)
    if codec == Compression.SNAPPY:
        # Raw snappy, as librdkafka writes it; Java's consumer reads both.
        return bytes(cramjam.snappy.compress_raw(bytes(data)))
    if codec == Compression.LZ4:
        return bytes(lz4.frame.compress(data, block_size=lz4.frame.BLOCKSIZE_MAX64KB))
    if codec == Compression.ZSTD:
        return bytes(zstandard.ZstdCompressor().compress(_zstd_buffer(data)))
    raise ValueError(f"no such compression codec: {codec}")


def decompress(codec: int, data: BytesLike, limit: int) -> bytes:
    """Inflate a batch's records area, at most ``limit`` bytes of it.

    Raises InflationLimit past the limit, ValueError on bad input.
    """
    if limit < 0:
        raise ValueError(f"the inflation limit must not be negative, not {limit}")
    try:
        if codec == Compression.GZIP:
            return _gzip_decompress(data, limit)
        if codec == Compression.SNAPPY:
            return _snappy_decompress(bytes(data), limit)
        if codec == Compression.LZ4:
            return _lz4_decompress(data, limit)
        if codec == Compression.ZSTD:
            return _zstd_decompress(data, limit)
    except (zlib.error, RuntimeError, zstandard.ZstdError, cramjam.DecompressionError) as exc:
        raise ValueError(f"cannot decompress {Compression(codec).name} data: {exc}") from exc
    raise ValueError(f"no such compression codec: {codec}")


def _step(out: bytes | bytearray, limit: int) -> int:
    """How much to ask for next: a step, and never more than one byte past the limit."""
    return min(_STEP, limit + 1 - len(out))


# The steps are gathered in a bytearray, which grows in place: `bytes += step`
# would copy everything inflated so far at each step, quadratic in the output
# (a 40 KiB gzip request then costs the loop most of a second).


def _gzip_decompress(data: BytesLike, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header, auto-detected
    out = bytearray(inflater.decompress(data, _step(b"", limit)))
    while inflater.unconsumed_tail and len(out) <= limit:
        out += inflater.decompress(inflater.unconsumed_tail, _step(out, limit))
    if len(out) > limit:
        raise InflationLimit(Compression.GZIP, limit, len(out))
    if not inflater.eof:
        raise ValueError("cannot decompress GZIP data: incomplete or truncated stream")
    return bytes(out)


def _lz4_decompress(data: BytesLike, limit: int) -> bytes:
    # A frame's content size is not trusted: the library would allocate it.
    inflater = lz4.frame.LZ4FrameDecompressor()
    out = bytearray(inflater.decompress(data, max_length=_step(b"", limit)))
    while not inflater.eof and not inflater.needs_input and len(out) <= limit:
        out += inflater.decompress(b"", max_length=_step(out, limit))
    if len(out) > limit:
        raise InflationLimit(Compression.LZ4, limit, len(out))
    if not inflater.eof:
        raise ValueError("cannot decompress LZ4 data: the frame is incomplete")
    return bytes(out)


def _zstd_buffer(data: BytesLike) -> bytes | bytearray | memoryview:
    """``data`` as zstandard's signatures take a buffer: a ByteSlice (a
    stored payload, native.untracked_view) through a memoryview of it."""
    return data if isinstance(data, bytes | bytearray | memoryview) else memoryview(data)


def _zstd_decompress(data: BytesLike, limit: int) -> bytes:
    decompressor = _zstd()
    declared = zstandard.get_frame_parameters(_zstd_buffer(data)).content_size
    if declared != _ZSTD_UNKNOWN and declared > 0:
        if declared > limit:
            raise InflationLimit(Compression.ZSTD, limit, declared)
        # One shot into a buffer of the declared size, which a frame cannot overrun.
        return bytes(decompressor.decompress(_zstd_buffer(data)))
    reader = decompressor.stream_reader(bytes(data))
    out = bytearray()
    while True:
        chunk = reader.read(_step(out, limit))
        if not chunk:
            return bytes(out)
        out += chunk
        if len(out) > limit:
            raise InflationLimit(Compression.ZSTD, limit, len(out))


def _snappy_length(data: bytes) -> int:
    """The uncompressed length a raw snappy block declares (its varint preamble)."""
    length = 0
    for i in range(min(5, len(data))):
        length |= (data[i] & 0x7F) << (7 * i)
        if not data[i] & 0x80:
            return length
    raise ValueError("cannot decompress SNAPPY data: bad length preamble")


def _snappy_block(data: bytes, limit: int) -> bytes:
    declared = _snappy_length(data)
    if declared > limit:
        raise InflationLimit(Compression.SNAPPY, limit, declared)
    return bytes(cramjam.snappy.decompress_raw(data))


def _snappy_decompress(data: bytes, limit: int) -> bytes:
    if not data.startswith(_XERIAL_MAGIC):
        return _snappy_block(data, limit)
    out = bytearray()
    pos = _XERIAL_HEADER
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError("xerial snappy chunk length is cut short")
        (size,) = struct.unpack_from(">i", data, pos)
        pos += 4
        if size < 0 or pos + size > len(data):
            raise ValueError("xerial snappy chunk runs past the data")
        try:
            out += _snappy_block(data[pos : pos + size], limit - len(out))
        except InflationLimit as exc:
            raise InflationLimit(Compression.SNAPPY, limit, len(out) + exc.found) from None
        pos += size
    return bytes(out)
