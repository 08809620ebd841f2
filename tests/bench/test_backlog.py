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
    written, port = backlog.with_metrics(tmp_path, given, 43210)
    loaded = load_config_file(written)
    assert port == 43210
    assert loaded.http.listen == ("127.0.0.1", 43210)
    assert loaded.http.max_connections == 8


def test_a_config_whose_listener_names_no_port_is_polled_on_the_default(tmp_path: Path) -> None:
    given = tmp_path / "given.toml"
    given.write_text('[http]\nlisten = "127.0.0.1"\n')
    assert backlog.with_metrics(tmp_path, given, 43210) == (given, 9644)


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


@pytest.fixture
def metrics_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_the_wait_asks_again_after_a_dropped_answer(
    metrics_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backlog, "POLL_S", 0.01)
    monkeypatch.setattr(_Metrics, "answers", [None, 4096, 0])
    assert backlog.wait_uploaded(metrics_port, 60.0) >= 0
    assert _Metrics.answers == [0]
