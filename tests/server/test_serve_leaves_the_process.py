"""``tidelog serve`` run in a process that lives on after it (a test, a
script calling the CLI's ``main``) leaves the process as it found it: no
handler of its own left on the root logger, no filter or formatter on the
caller's handlers, the levels it set put back, nothing left frozen out
of the cyclic collector's collections, and the soft limit on open files
it raised put back. Run twice, the second run
found the first's stderr handler, JSON formatter and repeat filter still
in place, and every object frozen."""

from __future__ import annotations

import gc
import logging
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.cli.process_restored import process_restored
from tests.logging_state import logging_kept
from tests.server.conftest import free_port

WAIT_S = 30.0
"""Bound of the wait for each run to listen."""


def _stop_once_listening(port: int, wait_s: float = WAIT_S) -> threading.Thread:
    """Sends this process SIGTERM (serve's own handler: a clean stop) once
    ``port`` accepts a connection, and never if it does not within
    ``wait_s``: a serve that failed to start has returned, and its handler
    with it, so the signal would end the test process itself (a serve
    still starting is then ended by the test's timeout)."""

    def wait_then_stop() -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            except OSError:
                time.sleep(0.02)
                continue
            os.kill(os.getpid(), signal.SIGTERM)
            return

    stopper = threading.Thread(target=wait_then_stop, daemon=True)
    stopper.start()
    return stopper


def _serve(data: Path) -> int:
    port = free_port()
    stopper = _stop_once_listening(port)
    status = main(
        ["serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data),
         "--log-format", "json", "--log-level", "INFO,tidelog.stalls=DEBUG"]
    )  # fmt: skip
    stopper.join(WAIT_S)
    return status


@pytest.fixture
def nothing_frozen() -> Iterator[None]:
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.mark.usefixtures("nothing_frozen")
def test_serve_run_twice_leaves_logging_and_the_collector_as_it_found_them(
    tmp_path: Path,
) -> None:
    root = logging.getLogger()
    stalls = logging.getLogger("tidelog.stalls")
    thresholds = gc.get_threshold()
    with logging_kept():
        # Without a handler, serve adds its own (basicConfig) and sets the level.
        root.handlers.clear()
        root.setLevel(logging.WARNING)
        assert _serve(tmp_path / "first") == 0
        assert root.handlers == []
        assert root.level == logging.WARNING
        assert stalls.level == logging.NOTSET
        assert gc.get_freeze_count() == 0
        # With the caller's own, serve formats and filters it while it runs.
        own = logging.StreamHandler()
        formatter = logging.Formatter("%(message)s")
        own.setFormatter(formatter)
        root.addHandler(own)
        assert _serve(tmp_path / "second") == 0
        assert root.handlers == [own]
        assert own.formatter is formatter
        assert own.filters == []
        assert root.level == logging.WARNING
        assert stalls.level == logging.NOTSET
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds


LOWERED_OPEN_FILES = 4096
"""A soft limit on open files below what serve asks for max.connections'
default (10,000 and room besides): serve raises it while it runs."""


@pytest.fixture
def open_files_lowered() -> Iterator[int]:
    """The soft limit on open files lowered to LOWERED_OPEN_FILES; the
    test process's own put back after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= LOWERED_OPEN_FILES:
        pytest.skip(f"the hard limit on open files ({hard}) leaves serve nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOWERED_OPEN_FILES, hard))
    try:
        yield LOWERED_OPEN_FILES
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_serve_puts_the_soft_limit_on_open_files_back_as_it_found_it(
    tmp_path: Path, open_files_lowered: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    raised: list[int] = []
    set_limit = resource.setrlimit

    def setrlimit(which: int, limits: tuple[int, int]) -> None:
        if which == resource.RLIMIT_NOFILE:
            raised.append(limits[0])
        set_limit(which, limits)

    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    with logging_kept():
        assert _serve(tmp_path / "data") == 0
    assert raised[0] > open_files_lowered  # serve raised it while it ran
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == open_files_lowered


def test_a_level_given_the_root_logger_by_name_is_put_back_too() -> None:
    """``--log-level INFO,root=DEBUG`` names the root logger among the
    single ones (``logging.getLogger("root")`` is the root): its level,
    set by basicConfig before the named ones are, is put back as serve
    found it, not as basicConfig left it."""
    root = logging.getLogger()
    with logging_kept():
        root.setLevel(logging.WARNING)
        with process_restored() as restored:
            root.setLevel(logging.INFO)  # basicConfig(level=...), as run() calls it
            restored.set_level("root", "DEBUG")
            assert root.level == logging.DEBUG
        assert root.level == logging.WARNING


def test_the_stopper_sends_nothing_when_serve_never_listens() -> None:
    """A serve that could not start (its port taken meanwhile) has no
    handler left for SIGTERM: the stopper, never let in, sends none."""
    port = free_port()
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: received.append(signum))
    try:
        _stop_once_listening(port, wait_s=0.3).join(WAIT_S)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert received == []
