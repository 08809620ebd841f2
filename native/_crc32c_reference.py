"""A bit-at-a-time CRC32C, slow and obviously right: what the fast ones are tested against."""

from __future__ import annotations

_POLY = 0x82F63B78  # Castagnoli, bit-reversed


def _table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _table()


def crc32c_reference(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    crc ^= 0xFFFFFFFF
    for byte in bytes(data):
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
