"""Typed errors for record batches that fail framing or validation.

Each class names, in ``kafka_error``, the error a Kafka broker returns for the
same fault; the engine maps those names to wire codes in one table. Both
implementations raise these exact classes with the same facts.
"""

from __future__ import annotations

from typing import ClassVar


class BatchError(ValueError):
    """A record batch (or a buffer of them) is not acceptable."""

    kafka_error: ClassVar[str] = "CORRUPT_MESSAGE"

    def __init__(
        self,
        message: str,
        *,
        position: int,
        expected: int | None = None,
        found: int | None = None,
    ) -> None:
        super().__init__(message)
        self.position = position
        self.expected = expected
        self.found = found

    def facts(self) -> tuple[type[BatchError], int, int | None, int | None]:
        """What the error says, comparable across implementations."""
        return (type(self), self.position, self.expected, self.found)


class TruncatedBatch(BatchError):
    """The buffer ends inside a batch: a header or the batch body is cut short."""


class InvalidBatchLength(BatchError):
    """batchLength is smaller than a v2 header."""


class CorruptBatch(BatchError):
    """The stored CRC32C does not match the bytes it covers."""


class UnsupportedMagic(BatchError):
    """Not a v2 (magic 2) batch; Produce v3+ accepts only magic 2."""

    kafka_error = "INVALID_RECORD"


class InvalidRecordCount(BatchError):
    """recordCount is not positive or disagrees with lastOffsetDelta."""

    kafka_error = "INVALID_RECORD"


class InvalidRecord(BatchError):
    """A record inside the batch is malformed (lengths, varints, headers)."""

    kafka_error = "INVALID_RECORD"


class UnsupportedCompression(BatchError):
    """The attributes name a compression codec Kafka does not define (5-7)."""

    kafka_error = "UNSUPPORTED_COMPRESSION_TYPE"
