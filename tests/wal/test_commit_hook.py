"""The commit hook: an owner of per-append state hears of each group once,
before any of the group's waiters wake, and hears of failures too."""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
from collections.abc import Callable

import pytest

from wal import LogIOError, Outcome, Position, WriteAheadLog
from wal import segment as segment_module

OpenLog = Callable[..., WriteAheadLog]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[tuple[object, Outcome]]] = []
        self.lock = threading.Lock()

    def __call__(self, tags: list[object], outcomes: list[Outcome]) -> None:
        with self.lock:
            self.calls.append(list(zip(tags, outcomes, strict=True)))

    def seen(self) -> dict[object, Outcome]:
        with self.lock:
            return {tag: outcome for call in self.calls for tag, outcome in call}


def test_every_tagged_append_is_reported_once_before_its_caller_returns(
    open_log: OpenLog,
) -> None:
    recorder = Recorder()
    log = open_log(on_commit=recorder)
    errors: list[str] = []

    def writer(thread: int) -> None:
        for i in range(200):
            tag = (thread, i)
            position = log.append(b"x" * 50, tag=tag)
            if recorder.seen().get(tag) != position:
                errors.append(f"{tag} was not reported before append returned")

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    reported = [tag for call in recorder.calls for tag, _ in call]
    assert sorted(reported) == sorted((t, i) for t in range(4) for i in range(200))
    # Reports come per group, and some group held more than one append.
    assert len(recorder.calls) < len(reported)


def test_untagged_appends_are_not_reported(open_log: OpenLog) -> None:
    recorder = Recorder()
    log = open_log(on_commit=recorder)
    log.append(b"untagged")
    tagged = log.append(b"tagged", tag="mine")
    assert recorder.calls == [[("mine", tagged)]]


def test_asyncio_appends_are_reported_before_the_coroutine_resumes(open_log: OpenLog) -> None:
    recorder = Recorder()
    log = open_log(on_commit=recorder)

    async def main() -> list[bool]:
        async def one(i: int) -> bool:
            position = await log.submit_async(b"y" * 10, tag=i)
            return recorder.seen().get(i) == position

        return await asyncio.gather(*(one(i) for i in range(100)))

    assert all(asyncio.run(main()))


def test_a_failed_group_is_reported_with_its_error(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    log = open_log(on_commit=recorder)
    log.append(b"fine", tag="fine")

    def failing_sync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(segment_module.os, "fdatasync", failing_sync)
    with pytest.raises(LogIOError):
        log.append(b"lost", tag="lost")
    seen = recorder.seen()
    assert isinstance(seen["fine"], Position)
    assert isinstance(seen["lost"], LogIOError)


def test_a_hook_that_raises_is_logged_and_appends_still_succeed(
    open_log: OpenLog, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(tags: list[object], outcomes: list[Outcome]) -> None:
        raise RuntimeError("owner bug")

    log = open_log(on_commit=broken)
    with caplog.at_level(logging.ERROR, logger="tidelog.wal"):
        first = log.append(b"a", tag=1)
        second = log.append(b"b", tag=2)
    assert second > first
    assert "commit hook failed" in caplog.text
    assert [entry.payload for entry in log.replay()] == [b"a", b"b"]
