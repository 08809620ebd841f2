"""bench/_backlog.py: the server config kafka_bench starts with /metrics
on, whatever [http] settings the config it was given holds, and the wait
for the unuploaded backlog through the answers a busy server gives."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import pytest

from engine.server.config import load_config_file
from tests.bench.run import load_bench


def _load() -> ModuleType:
    return load_bench("_backlog.py", "bench_backlog")


backlog = _load()


def test_a_config_with_an_http_table_and_no_listener_gets_one(tmp_path: Path) -> None:
    given = tmp_path / "given.toml"
    given.write_text('[server]\nlisten = "127.0.0.1:0"\n\n[http]  # probes\nmax_connections = 8\n')
    written, address = backlog.with_metrics(tmp_path, given, 43210)
    loaded = load_config_file(written)
    assert address == ("127.0.0.1", 43210)
    assert loaded.http.listen == ("127.0.0.1", 43210)
    assert loaded.http.max_connections == 8


def test_a_config_whose_listener_names_no_port_is_polled_on_the_default(tmp_path: Path) -> None:
    given = tmp_path / "given.toml"
    given.write_text('[http]\nlisten = "127.0.0.1"\n')
    assert backlog.with_metrics(tmp_path, given, 43210) == (given, ("127.0.0.1", 9644))


@pytest.mark.parametrize(
    ("listen", "polled"),
    [
        ("127.0.0.2:9700", ("127.0.0.2", 9700)),
        ("[::1]:9700", ("::1", 9700)),
        ("0.0.0.0:9700", ("127.0.0.1", 9700)),
        ("[::]:9700", ("::1", 9700)),
    ],
)
def test_a_config_whose_listener_names_a_host_is_polled_at_that_host(
    tmp_path: Path, listen: str, polled: tuple[str, int]
) -> None:
    given = tmp_path / "given.toml"
    given.write_text(f'[http]\nlisten = "{listen}"\n')
    assert backlog.with_metrics(tmp_path, given, 43210) == (given, polled)


def test_a_config_whose_listener_the_system_gives_a_port_is_refused(tmp_path: Path) -> None:
    given = tmp_path / "given.toml"
    given.write_text('[http]\nlisten = "127.0.0.1:0"\n')
    with pytest.raises(ValueError, match="no fixed port"):
        backlog.with_metrics(tmp_path, given, 43210)


class _Metrics(http.server.BaseHTTPRequestHandler):
    """Drops the first connection unanswered, then reports a backlog, then none."""

    answers: ClassVar[list[int | None]] = []

    def do_GET(self) -> None:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer is None:
            self.close_connection = True
            return  # nothing written: the client sees the connection drop
        body = f"# TYPE {backlog.UNUPLOADED} gauge\n{backlog.UNUPLOADED} {answer}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture(params=["127.0.0.1", "127.0.0.2"])
def metrics_address(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    """/metrics on a loopback address; 127.0.0.2 answers no poll of 127.0.0.1."""
    server = http.server.ThreadingHTTPServer((request.param, 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield request.param, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_the_wait_asks_again_after_a_dropped_answer(
    metrics_address: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backlog, "POLL_S", 0.01)
    monkeypatch.setattr(_Metrics, "answers", [None, 4096, 0])
    assert backlog.wait_uploaded(metrics_address, 60.0) >= 0
    assert _Metrics.answers == [0]
