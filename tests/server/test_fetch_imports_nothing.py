"""A Fetch runs no import statement once the server has answered one: an
import statement run again still passes through the import machinery and
formats an AttributeError it drops: five of them a Fetch were some 5% of a
replay's instructions on the event loop (docs/design/0085)."""

from __future__ import annotations

import builtins
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import engine
from tests.server.fetching import engine_with_records, fetch_request
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire


@pytest.fixture
def served(tmp_path: Any) -> Iterator[engine.Engine]:
    with engine_with_records(tmp_path / "data", 1, {0: 3}) as opened:
        yield opened


def _request(version: int, topic_id: uuid.UUID) -> Any:
    return fetch_request(version, [("t" if version < 13 else topic_id, [(0, 0)])])


@pytest.mark.parametrize("version", [12, 13])
def test_a_fetch_imports_nothing_on_the_loop(
    served: engine.Engine, version: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = InProcessServer(served)
    try:
        loop_thread = server.on_loop(threading.get_ident)
        topic_id = uuid.UUID(bytes=served.topic_id("t"))
        with Wire(server.bootstrap) as wire:
            request = _request(version, topic_id)
            first = wire.request(request)  # anything imported on first use is imported now
            imported: list[str] = []
            real_import = builtins.__import__

            def counted(name: str, *args: Any, **kwargs: Any) -> Any:
                if threading.get_ident() == loop_thread:
                    imported.append(name)
                return real_import(name, *args, **kwargs)

            monkeypatch.setattr(builtins, "__import__", counted)
            again = wire.request(request)
            monkeypatch.setattr(builtins, "__import__", real_import)
    finally:
        server.stop()
    records = [p.records for topic in again.responses for p in topic.partitions]
    assert records == [p.records for topic in first.responses for p in topic.partitions]
    assert records and records[0]  # the partition's records were read and answered
    assert imported == []
