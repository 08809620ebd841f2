"""Pure-Python twin of native._cnative: same functions, same results, same errors."""

from __future__ import annotations

import crc32c as _crc32c_lib

BytesLike = bytes | bytearray | memoryview


def crc32c(data: BytesLike, crc: int = 0) -> int:
    """CRC32C (Castagnoli) of ``data``, continuing from a previous ``crc``."""
    return int(_crc32c_lib.crc32c(data, crc))
