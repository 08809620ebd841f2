"""What the stream store writes in the WAL, and who wrote it.

The WAL (``wal/``) stores records of a type with a stream id, an offset
range and a payload; this module owns what the stream store puts in them
(docs/object-format.md, "WAL entries"). Every entry written today starts
with its writer: the data directory's identity and the manifest epoch the
directory held when it wrote the entry. Replay uses them to tell entries
written while this directory owned the store (replayed) from entries
written under an ownership another writer has since taken over (dropped:
their offsets may hold the other writer's records now).

The identity is a random id kept in the data directory, recorded in the
manifest by each fence (``ManifestState.owner``).
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

from s3stream.errors import CorruptIdentity

WAL_DATA = 1
"""Before owners were recorded: one append; stream id, [start, end), the stored bytes."""
WAL_TRIM = 2
"""Before owners were recorded: a stream's new start offset (in the start field)."""
WAL_OWNED_DATA = 3
"""One append: stream id, [start, end) offsets; payload: writer, then the stored bytes."""
WAL_OWNED_TRIM = 4
"""A stream's new start offset (in the start field); payload: the writer only."""

WRITER = struct.Struct("<8sQ")  # data directory identity, manifest epoch
WRITER_SIZE = WRITER.size  # 16

IDENTITY_FILE = "identity"
_IDENTITY_BYTES = 8


class Writer(NamedTuple):
    """Who wrote a WAL entry: the data directory and the epoch it held."""

    owner: str
    """The data directory's identity, 16 hex digits ("" for entries from before)."""
    epoch: int


def encode_writer(owner: str, epoch: int) -> bytes:
    return WRITER.pack(bytes.fromhex(owner), epoch)


def split_entry(entry_type: int, payload: memoryview) -> tuple[Writer | None, memoryview]:
    """The writer of an entry (None for the older types that have none) and
    the rest of its payload. A payload too short for its writer is reported
    as one from an unknown owner, which replay never takes as its own."""
    if entry_type not in (WAL_OWNED_DATA, WAL_OWNED_TRIM):
        return None, payload
    if len(payload) < WRITER_SIZE:
        return Writer("", 0), payload[:0]
    owner, epoch = WRITER.unpack_from(payload)
    return Writer(owner.hex(), epoch), payload[WRITER_SIZE:]


def is_trim(entry_type: int) -> bool:
    return entry_type in (WAL_TRIM, WAL_OWNED_TRIM)


def load_identity(data_dir: str) -> str:
    """The data directory's identity, created (and synced) on first use.

    Called with the directory's WAL lock held, so two openers never race.
    """
    path = os.path.join(data_dir, IDENTITY_FILE)
    try:
        with open(path, "rb") as file:
            found = file.read(64)
    except FileNotFoundError:
        pass
    else:
        text = found.strip().decode("ascii", "replace")
        if len(text) != 2 * _IDENTITY_BYTES or not _is_hex(text):
            raise CorruptIdentity(path, text)
        return text
    identity = os.urandom(_IDENTITY_BYTES).hex()
    temporary = path + ".tmp"
    # 0600 whatever the umask, as every file of the data directory.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with open(descriptor, "w", encoding="ascii") as file:
        file.write(identity + "\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return identity


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True
