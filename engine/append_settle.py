"""The object an append's outcome is handed to on the loop, the caller's
own (Acks.submit_then, Engine.submit_then_to): it carries the append's
result and answers, and is the store's and the WAL's waiter too (a
DurableCall), where a settle object, the store's and the caller's call
were made an append (the Produce handler's one-partition answer is one)."""

from __future__ import annotations

from engine.partition import AppendResult, Partition
from engine.store_errors import answer_over_deletion, translate
from s3stream import DurableCall, S3StreamError


class AppendSettle(DurableCall):
    """What Acks.submit_then settles on the loop once an append is durable
    (``settle(None)``) or failed (the store's error, or a retry's engine
    error): the caller's own object, whose ``result`` is set once the
    append is accepted, before any call, and ``leader`` to the partition
    appended to. A subclass's ``settle`` gives a store's error to
    ``engine_error`` with ``leader`` for the engine's: the one object
    carries the result and answers and is the store's DurableCall, where
    a settle object, the store's and the caller's call were made an
    append (docs/design/0159). One object serves one append."""

    __slots__ = ("leader", "result")

    result: AppendResult
    leader: Partition


def engine_error(leader: Partition, error: BaseException) -> BaseException:
    """The engine's error for the failure of an append to ``leader`` once
    accepted: UnknownTopic if its topic was deleted under it (its stream's
    deletion fails a remote acknowledgement's wait), as a refusal before
    acceptance answers it (refused_append: answer_over_deletion, the one
    decision, docs/design/0144); else the engine's error for a store's,
    others as they are. The store's error is its cause."""
    answer: BaseException | None = answer_over_deletion(leader, error)
    if answer is None:
        if not isinstance(error, S3StreamError):
            return error
        answer = translate(error)
    answer.__cause__ = error
    return answer
