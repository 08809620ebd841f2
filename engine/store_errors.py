"""The engine's errors for the stream store's: what a ``StreamStore``
failure becomes when it reaches the engine's callers (Fenced, EngineClosed,
StorageError, CorruptStoredData naming the partition and offset)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from engine.errors import CorruptStoredData, EngineClosed, EngineError, Fenced, StorageError
from s3stream import CorruptObject, S3StreamError, StoreClosed
from s3stream import Fenced as StoreFenced


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Raises the engine's error for a stream-store error raised inside."""
    try:
        yield
    except S3StreamError as error:
        raise translate(error) from error


@contextlib.contextmanager
def damage_at(topic: str, partition: int, offset: int) -> Iterator[None]:
    """Raises CorruptStoredData, naming the partition and offset, for a
    damaged object met by a read inside."""
    try:
        yield
    except CorruptObject as error:
        raise CorruptStoredData(topic, partition, offset, error.key, error.reason) from error


def translate_optional(error: BaseException | None) -> BaseException | None:
    return None if error is None else translate(error)


def translate(error: BaseException) -> BaseException:
    """The engine's error for a stream-store error."""
    if isinstance(error, EngineError):
        return error
    if isinstance(error, StoreFenced):
        return Fenced(f"another engine opened this storage: {error}")
    if isinstance(error, StoreClosed):
        return EngineClosed()
    if isinstance(error, S3StreamError):
        return StorageError(str(error))
    return error
