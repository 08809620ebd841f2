"""Damaging what a local object store holds, for the fault tests: a byte of
a data block, an object's index or footer, a manifest record. Objects are
found by what they hold (a marker in a record's value) or by their place in
the format (docs/object-format.md), never by guessing file offsets."""

from __future__ import annotations

from pathlib import Path

from s3stream.objects import FOOTER_SIZE, INDEX_ENTRY, parse_footer


def data_objects(root: Path) -> list[Path]:
    """The data objects (stream-set and stream objects) under a local store's root."""
    return sorted(p for p in (root / "objects").rglob("*") if p.suffix in (".sso", ".so"))


def flip(path: Path, position: int) -> None:
    """Inverts one byte of a file, in place."""
    data = bytearray(path.read_bytes())
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def damage_marker(root: Path, marker: bytes) -> list[str]:
    """Flips the first byte of ``marker`` in every data object holding it
    (so the block holding that record fails its checksum); returns the
    objects' keys."""
    keys = []
    for path in data_objects(root):
        position = path.read_bytes().find(marker)
        if position >= 0:
            flip(path, position)
            keys.append(path.relative_to(root).as_posix())
    assert keys, f"no data object holds {marker!r}"
    return keys


def index_position(path: Path) -> int:
    """Where the object's index starts (its first entry's stream id)."""
    data = path.read_bytes()
    footer = parse_footer(path.name, data[-FOOTER_SIZE:], len(data))
    assert footer.block_count > 0
    assert footer.index_position + footer.block_count * INDEX_ENTRY.size == len(data) - FOOTER_SIZE
    return footer.index_position


def footer_position(path: Path) -> int:
    return path.stat().st_size - FOOTER_SIZE
