"""The object an append's outcome is handed to on the loop, the caller's
own (Acks.submit_then, Engine.submit_then_to): it carries the append's
result and answers, where a settle object and the caller's call were made
an append (the Produce handler's one-partition answer is one)."""

from __future__ import annotations

from engine.partition import AppendResult
from engine.store_errors import translate
from s3stream import S3StreamError


class AppendSettle:
    """What Acks.submit_then calls on the loop once an append is durable
    (``None``) or failed (the store's error, or a retry's engine error):
    the caller's own object, whose ``result`` is set once the append is
    accepted, before any call. A subclass's ``__call__`` gives a store's
    error to ``engine_error`` for the engine's, as store_errors() raises
    it: the one object carries the result and answers, where a settle
    object and the caller's call were made an append."""

    __slots__ = ("result",)

    result: AppendResult

    def __call__(self, error: BaseException | None) -> None:
        raise NotImplementedError


def engine_error(error: BaseException) -> BaseException:
    """The engine's error for a store's (its cause), others as they are."""
    if not isinstance(error, S3StreamError):
        return error
    translated = translate(error)
    translated.__cause__ = error
    return translated
