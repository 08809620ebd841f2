"""Fault injection for the group coordinator: commits written to the
"groups" state log whose answers never come, as when the engine crashes
after their records are durable and before the coordinator acts on that;
and deletions whose records never reach the log, as when it crashes
before they are durable."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from engine.groups import GroupCoordinator


def never_answered(
    groups: GroupCoordinator,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
    deletions: bool = False,
) -> list[partial[None]]:
    """Writes putting values under keys of ``kind`` ("txn" or "offset")
    (and, with ``deletions``, deleting keys of that kind) are made, but
    what follows their durability is held: returned in order, to run under
    the coordinator's lock (``.func`` takes another outcome than the
    write's: a failure), or never (a crash)."""
    held: list[partial[None]] = []
    write = groups._run.write

    def holding(
        puts: dict[Any, Any],
        deletes: list[Any],
        then: Callable[[Any], None] | None = None,
        **options: Any,
    ) -> None:
        deleted = deletions and any(key[0] == kind for key in deletes)
        if then is not None and (
            deleted or any(key[0] == kind and v is not None for key, v in puts.items())
        ):
            answer = then
            write(puts, deletes, lambda error: held.append(partial(answer, error)), **options)
            return
        write(puts, deletes, then, **options)

    monkeypatch.setattr(groups._run, "write", holding)
    return held


def deletions_never_written(
    groups: GroupCoordinator, kind: str, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[dict[Any, Any], list[Any]]]:
    """Writes deleting keys of ``kind`` ("txn" or "offset") are not made:
    their records are returned in order and never answered, as when the
    engine stops before they are durable (what the coordinator did in
    memory meanwhile is lost with it)."""
    lost: list[tuple[dict[Any, Any], list[Any]]] = []
    write = groups._run.write

    def losing(
        puts: dict[Any, Any],
        deletes: list[Any],
        then: Callable[[Any], None] | None = None,
        **options: Any,
    ) -> None:
        if any(key[0] == kind for key in deletes):
            lost.append((puts, deletes))
            return
        write(puts, deletes, then, **options)

    monkeypatch.setattr(groups._run, "write", losing)
    return lost
