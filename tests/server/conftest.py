"""Fixtures that run the wire server as users do: ``python -m engine serve``
in its own process, on a loopback port, reached by real Kafka clients."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
import weakref
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import pytest

from tests.child_ends import how_it_ended
from tests.server.certificates import Tls, issue_tls

_READY = "listening on"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """``tidelog serve`` in a child process. It keeps its port across
    restarts, so clients configured with ``bootstrap`` can reconnect."""

    started: ClassVar[weakref.WeakSet[ServerProcess]] = weakref.WeakSet()
    """Every server started and not yet collected: a test that fails is
    told which of them ended unasked (pytest_runtest_makereport below)."""

    def __init__(
        self, data_dir: Path, *, object_store: str | None = None, args: Sequence[str] = ()
    ) -> None:
        self.data_dir = data_dir
        self.object_store = object_store
        self.args = list(args)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        self.starts = 0
        self._this_start = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        assert self.process is None, "already running"
        command = [
            sys.executable,
            "-m",
            "engine",
            "serve",
            "--listen",
            self.bootstrap,
            "--data-dir",
            str(self.data_dir),
            *self.args,
        ]
        if self.object_store:
            command += ["--object-store", self.object_store]
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            log.flush()
            this_start = self._this_start = log.tell()
            self.process = self._launch(command)
        ServerProcess.started.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ended = self.process.poll()
            if ended is not None:
                raise RuntimeError(f"the server {how_it_ended(ended)} at start:\n{self.log()}")
            if self._ready(this_start):
                if "--http" in self.args:
                    # The operations endpoints bind after the wire server
                    # logs that it listens: a GET at once could be refused.
                    self.wait_logged("operations endpoints on ", deadline - time.monotonic())
                return self
            # Polled often: a test that restarts its server dozens of times
            # waited out half an interval at each start.
            time.sleep(0.01)
        self.kill()
        raise RuntimeError(f"the server did not start in {timeout} s:\n{self.log()}")

    def _launch(self, command: list[str]) -> subprocess.Popen[bytes]:
        """The server's process, its output appended to the log."""
        with self.log_path.open("ab") as log:
            return subprocess.Popen(command, stderr=log, stdout=log)

    def _ready(self, this_start: int) -> bool:
        """Whether this start's lines (from ``this_start`` in the log, which
        the earlier starts' lines precede) say the server listens."""
        with self.log_path.open("rb") as log:
            log.seek(this_start)
            return _READY.encode() in log.read()

    def wait_logged(self, line: str, timeout: float = 60.0) -> None:
        """Waits until this start's lines hold ``line`` (a listener that
        binds after the wire server's, as ``--http``'s does)."""
        assert self.process is not None, "not running"
        deadline = time.monotonic() + timeout
        while True:
            with self.log_path.open("rb") as log:
                log.seek(self._this_start)
                if line.encode() in log.read():
                    return
            ended = self.process.poll()
            if ended is not None:
                raise RuntimeError(f"the server {how_it_ended(ended)}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not log {line!r} in {timeout} s:\n{self.log()}")
            time.sleep(0.01)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, as a service manager would; returns the exit status."""
        assert self.process is not None, "not running"
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout)
        finally:
            self.process = None
        return status

    def kill(self) -> None:
        """SIGKILL: no shutdown at all."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ended_unasked(self) -> str | None:
        """How the server ended, with its log's tail, if it ended neither
        stopped nor killed by this object (a crash); None while it runs."""
        if self.process is None:
            return None
        ended = self.process.poll()
        if ended is None:
            return None
        tail = self.log()[-3000:]
        return f"the server on port {self.port} {how_it_ended(ended)}; its log's tail:\n{tail}"

    def end_at_teardown(self, *, graceful: bool) -> None:
        """A fixture's end of its server: stopped (``graceful``, which must
        exit 0) or killed; a server found ended unasked fails the teardown
        with how it ended, where the fixture would have passed it as stopped."""
        ended = self.ended_unasked()
        if ended is not None:
            self.process = None
            raise AssertionError(ended)
        if not self.running:
            return
        if graceful:
            status = self.stop()
            assert status == 0, f"the server {how_it_ended(status)} when stopped:\n{self.log()}"
            return
        process = self.process
        self.kill()
        # A crash under way as the kill came ends the process with its own signal.
        assert process is not None and process.returncode == -signal.SIGKILL, (
            f"the server {how_it_ended(process.returncode)} when killed:\n{self.log()[-3000:]}"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report says how each server that ended unasked
    ended: a crash must not read as a client's reset connection."""
    report = yield
    if report.failed:
        for server in list(ServerProcess.started):
            if server.process is not None:
                # A crash closes the server's sockets before its process is
                # seen to end: a client's error can come first by a moment.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.process.wait(1.0)
            ended = server.ended_unasked()
            if ended is not None:
                report.sections.append(("how the server ended", ended))
    return report


@contextmanager
def killed_if_setup_fails(server: ServerProcess) -> Iterator[ServerProcess]:
    """A fixture's setup of a started server: if it fails, the server is
    killed, since a fixture that fails before it yields has no teardown."""
    try:
        yield server
    except BaseException:
        server.kill()
        raise


@pytest.fixture(scope="module")
def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for a test module; tests use their own topics."""
    server = ServerProcess(tmp_path_factory.mktemp("server") / "data").start()
    yield server
    server.end_at_teardown(graceful=True)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server for one test, which it may restart or kill."""
    server = ServerProcess(tmp_path / "data").start()
    yield server
    server.end_at_teardown(graceful=False)


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return f"t-{uuid.uuid4().hex[:12]}"


def quiet_librdkafka() -> dict[str, object]:
    """librdkafka settings that keep its log lines out of test output."""
    return {"log_level": 3 if os.environ.get("TIDELOG_CLIENT_DEBUG") is None else 7}


GROUP_SERVER_CONFIG = """
[engine]
group_initial_rebalance_delay_ms = 0
group_min_session_timeout_ms = 500
"""
"""No initial rebalance delay and a small minimum session timeout, so group
tests can use sessions of a second or two."""


def start_group_server(root: Path) -> ServerProcess:
    """A server configured for group tests, its data and config under ``root``."""
    config = root / "tidelog.toml"
    config.write_text(GROUP_SERVER_CONFIG)
    return ServerProcess(root / "data", args=["--config", str(config)]).start()


@pytest.fixture(scope="module")
def group_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One group-test server for a test module; tests use their own groups."""
    server = start_group_server(tmp_path_factory.mktemp("groups"))
    yield server
    server.end_at_teardown(graceful=True)


@pytest.fixture
def own_group_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A group-test server for one test, which it may restart or kill."""
    server = start_group_server(tmp_path)
    yield server
    server.end_at_teardown(graceful=False)


TRANSACTION_SERVER_CONFIG = (
    GROUP_SERVER_CONFIG + "transaction_abort_timed_out_transaction_cleanup_interval_ms = 200\n"
)
"""The group tests' settings, and open transactions checked against their
timeout five times a second, so a test can use a timeout of a few seconds."""


def start_transaction_server(root: Path) -> ServerProcess:
    config = root / "tidelog.toml"
    config.write_text(TRANSACTION_SERVER_CONFIG)
    return ServerProcess(root / "data", args=["--config", str(config)]).start()


@pytest.fixture(scope="module")
def transaction_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One transaction-test server for a test module."""
    server = start_transaction_server(tmp_path_factory.mktemp("transactions"))
    yield server
    server.end_at_teardown(graceful=True)


@pytest.fixture
def own_transaction_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A transaction-test server for one test, which it may restart or kill."""
    server = start_transaction_server(tmp_path)
    yield server
    server.end_at_teardown(graceful=False)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A CA and its server and client certificates, for a test module."""
    return issue_tls(tmp_path_factory.mktemp("tls"))
