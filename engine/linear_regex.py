"""Regular expressions that clients send, matched in time linear in the
text matched, as Kafka matches them (RE2/J): a KIP-848 member's
SubscribedTopicRegex, ListTransactions' transactional id pattern, and the
patterns of the JSON Schemas records are checked against
(engine/schemas/linear_json_schema.py).

Python's ``re`` backtracks: ``(a+)+b`` against a topic name of a few dozen
``a`` runs for hours, and holds the interpreter's lock all along, so one
such subscription would stop every connection of the server. RE2 matches
without backtracking, and refuses what it cannot match so (lookarounds,
backreferences, repetitions past 1000, programs past its memory bound),
as RE2/J refuses it: the caller answers INVALID_REGULAR_EXPRESSION.
"""

from __future__ import annotations

from typing import Protocol

import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is the client's error, answered, not logged


class InvalidPattern(ValueError):
    """A pattern RE2 does not compile; the message says why."""


class LinearPattern(Protocol):
    def fullmatch(self, text: str) -> object | None: ...

    def search(self, text: str) -> object | None: ...


def compile_linear(pattern: str) -> LinearPattern:
    """``pattern`` compiled by RE2; raises InvalidPattern."""
    try:
        compiled: LinearPattern = re2.compile(pattern, options=_OPTIONS)
    except re2.error as error:
        reason = error.args[0] if error.args else ""
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise InvalidPattern(str(reason) or "not a regular expression") from None
    return compiled
