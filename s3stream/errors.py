"""Typed errors of the stream store; each carries the facts of what went wrong."""

from __future__ import annotations

from collections.abc import Iterable


class S3StreamError(Exception):
    """Base class of every stream-store error."""


class Fenced(S3StreamError):
    """A newer writer owns the store (or the stream); this one must stop.

    Raised by the commit that discovers it, and by every append after it.
    """

    def __init__(self, what: str, epoch: int, newer_epoch: int) -> None:
        super().__init__(f"{what} is fenced: epoch {epoch} was superseded by epoch {newer_epoch}")
        self.what = what
        self.epoch = epoch
        self.newer_epoch = newer_epoch


class StreamNotFound(S3StreamError):
    def __init__(self, stream_id: int) -> None:
        super().__init__(f"stream {stream_id} does not exist")
        self.stream_id = stream_id


class StreamNotOpen(S3StreamError):
    def __init__(self, stream_id: int) -> None:
        super().__init__(f"stream {stream_id} is not open for appends in this store")
        self.stream_id = stream_id


class OffsetMismatch(S3StreamError):
    """An append's base offset is not the stream's next offset."""

    def __init__(self, stream_id: int, expected: int, found: int) -> None:
        super().__init__(f"stream {stream_id}: append at offset {found}, expected {expected}")
        self.stream_id = stream_id
        self.expected = expected
        self.found = found


class OffsetOutOfRange(S3StreamError):
    """A fetch asked for an offset outside ``[start_offset, end_offset]``."""

    def __init__(self, stream_id: int, offset: int, start_offset: int, end_offset: int) -> None:
        super().__init__(
            f"stream {stream_id}: offset {offset} is outside [{start_offset}, {end_offset}]"
        )
        self.stream_id = stream_id
        self.offset = offset
        self.start_offset = start_offset
        self.end_offset = end_offset


class ReadPending(S3StreamError):
    """An async fetch's read from object storage had not finished when its
    wait (``remote_fetch_max_wait_ms``) ended; the read goes on, and the
    next fetch at ``offset`` shares it."""

    def __init__(self, stream_id: int, offset: int, waited_s: float) -> None:
        super().__init__(
            f"stream {stream_id}: the object read at offset {offset} had not finished"
            f" after {waited_s * 1000:.0f} ms; it goes on, fetch again"
        )
        self.stream_id = stream_id
        self.offset = offset


MISSING = "missing: the manifest names it, the object store does not have it"
"""The reason of a CorruptObject for an object the store does not have."""


class CorruptObject(S3StreamError):
    """An object (or manifest record) fails its checksum or structure checks."""

    def __init__(self, key: str, reason: str, position: int | None = None) -> None:
        where = f" at byte {position}" if position is not None else ""
        super().__init__(f"object {key!r}{where}: {reason}")
        self.key = key
        self.reason = reason
        self.position = position


class ConditionalWritesNotEnforced(S3StreamError):
    """The object store accepts conditional writes but does not enforce them.

    The manifest's fencing rests on create-if-absent and
    replace-if-version: on a store that ignores them, two writers both
    commit and the bucket's history forks. Raised at open, before anything
    is written, by the probe in ``s3stream/store/probe.py``.
    """

    def __init__(self, url: str, condition: str) -> None:
        super().__init__(
            f"the object store {url} does not enforce {condition}: two writers on it "
            "would corrupt the manifest. Use a store that enforces conditional writes "
            "(AWS S3, MinIO, ...), or, if no other writer can ever open this bucket "
            "and prefix, open it with conditional_writes=unenforced-single-writer "
            "(see docs/object-format.md)"
        )
        self.url = url
        self.condition = condition


class DeadlinePassed(S3StreamError):
    """A manifest commit given a deadline (an admin request's timeout) was
    not made by then: the object store failed transiently until it passed,
    or another commit held the manifest. Nothing this call asked for is in
    force; a commit whose answer was lost is settled, and what it created
    deleted, by the next commit (s3stream/manifest_writer.py)."""

    def __init__(self, what: str, cause: BaseException | None = None) -> None:
        detail = f": {cause}" if cause is not None else ""
        super().__init__(f"{what} was not committed before its deadline{detail}")
        self.what = what


class StoreClosed(S3StreamError):
    def __init__(self) -> None:
        super().__init__("the stream store is closed")


class NoRoom(S3StreamError):
    """An append that never waits for room (``Pacing.NEVER``: a record of
    state, written under a lock others wait for) was refused: this much is
    not uploaded yet, past ``max_unuploaded_bytes`` by more than
    ``unpaced_headroom_bytes`` (the object store slow or down). Nothing was
    appended; try again once the store takes uploads."""

    def __init__(self, stream_id: int, unuploaded_bytes: int, limit: int) -> None:
        super().__init__(
            f"stream {stream_id}: no room for an append that cannot wait: "
            f"{unuploaded_bytes} bytes not uploaded, over the limit of {limit} "
            f"(max_unuploaded_bytes + unpaced_headroom_bytes); retry once the object store "
            f"takes uploads"
        )
        self.stream_id = stream_id
        self.unuploaded_bytes = unuploaded_bytes
        self.limit = limit


class AppendTooLarge(S3StreamError):
    """An append larger than one WAL record can hold (``max_append_bytes``:
    the WAL's segment less its framing and this opening's prefix) was
    refused before anything changed; the store keeps serving. Only a
    record of the server's own state can be this large (client batches
    are bounded by ``max.message.bytes`` first): its writer answers what
    Kafka answers a coordinator append refused with RECORD_LIST_TOO_LARGE."""

    def __init__(self, stream_id: int, size: int, limit: int) -> None:
        super().__init__(
            f"stream {stream_id}: a {size}-byte append exceeds the {limit} bytes one "
            f"WAL record holds (the config's wal_segment_bytes); nothing was appended"
        )
        self.stream_id = stream_id
        self.size = size
        self.limit = limit


def check_fits(stream_id: int, payloads: Iterable[bytes], limit: int) -> None:
    """Raises AppendTooLarge for the first of ``payloads`` past ``limit``
    (the store's ``max_append_bytes``): a writer of several records checks
    them all before appending the first, so none is refused after another
    was taken."""
    for payload in payloads:
        if len(payload) > limit:
            raise AppendTooLarge(stream_id, len(payload), limit)


class StoreFailed(S3StreamError):
    """The store stopped after an error it cannot recover from (e.g. the WAL failed)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"the stream store failed: {cause}")
        self.cause = cause


class RangeChanged(S3StreamError):
    """``replace_range`` found the stream's committed ranges changed while it
    wrote the new object (compaction merged them, retention trimmed them, or
    another replace got there first); nothing was replaced. Retry with fresh
    boundaries from ``committed_ranges``."""

    def __init__(self, stream_id: int, start_offset: int, end_offset: int) -> None:
        super().__init__(
            f"stream {stream_id}: committed ranges in [{start_offset}, {end_offset}) "
            "changed during the replace; retry"
        )
        self.stream_id = stream_id
        self.start_offset = start_offset
        self.end_offset = end_offset


class CorruptIdentity(S3StreamError):
    """The data directory's identity file is unreadable. Without it the WAL's
    entries cannot be told apart from a fenced writer's, so the store refuses
    to open rather than drop them; restore the file (16 hex digits) or move
    the data directory aside."""

    def __init__(self, path: str, found: str) -> None:
        super().__init__(f"{path}: not a data directory identity (found {found!r})")
        self.path = path
        self.found = found


class ForkPointInsideRange(S3StreamError):
    """A fork cannot start inside a stored batch (it would split the batch),
    nor inside a range a log cleaner rewrote (its chain is proven over the
    whole range). ``range_start`` and ``range_end`` are the bounds of that
    batch or range: fork points that work."""

    def __init__(self, stream_id: int, offset: int, range_start: int, range_end: int) -> None:
        super().__init__(
            f"stream {stream_id}: offset {offset} is inside the stored batch or cleaned "
            f"range [{range_start}, {range_end}); fork at {range_start} or {range_end}"
        )
        self.stream_id = stream_id
        self.offset = offset
        self.range_start = range_start
        self.range_end = range_end


class ConfigOutOfRange(S3StreamError, ValueError):
    """A setting given a value it cannot run with, refused when its config
    is made (the embedded API) or its file is read (``tidelog serve``)."""

    def __init__(self, setting: str, value: object, accepted: str) -> None:
        super().__init__(f"{setting} must be {accepted}, not {value!r}")
        self.setting = setting
        self.value = value
        self.accepted = accepted

    def named(self, setting: str) -> ConfigOutOfRange:
        """The same refusal naming the setting as its reader wrote it (a
        file's key, a table's, a prefixed name), where the config that
        refused it knows it by its field's name."""
        return ConfigOutOfRange(setting, self.value, self.accepted)
