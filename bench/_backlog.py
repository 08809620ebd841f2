"""The server's unuploaded backlog, read from its /metrics, for a produce
phase whose clock stops at the last delivery: the bytes acknowledged from
the WAL and not yet in an uploaded object (up to max_unuploaded_bytes) are
uploaded after it, and what a MiB costs the server all told is counted
until they are (kafka_bench's ``server_produce_uploaded_ms_per_mib``)."""

from __future__ import annotations

import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

UNUPLOADED = "tidelog_wal_unuploaded_bytes"
POLL_S = 0.25
"""Between two reads of /metrics: each costs the server a rendering of them
(counted in the CPU it measures), so a few a second, not a busy poll."""


def with_metrics(scratch: Path, config: Path | None, port: int) -> tuple[Path, int]:
    """A server config with /metrics on: ``config`` (if any) with an
    ``[http]`` listener on ``port`` added, or its own listener's port if it
    names one. Returns the file to start the server with and the port."""
    text = config.read_text(encoding="utf-8") if config is not None else ""
    listen = tomllib.loads(text).get("http", {}).get("listen")
    if listen is not None:
        assert config is not None
        return config, int(str(listen).rsplit(":", 1)[1])
    written = scratch / "server-with-metrics.toml"
    written.write_text(f'{text}\n[http]\nlisten = "127.0.0.1:{port}"\n', encoding="utf-8")
    return written, port


def unuploaded_bytes(port: int) -> int:
    """The server's unuploaded bytes now (its /metrics gauge)."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as answer:
        text: str = answer.read().decode()
    for line in text.splitlines():
        if line.startswith(UNUPLOADED + " "):
            return int(float(line.rsplit(" ", 1)[1]))
    raise RuntimeError(f"{url} reports no {UNUPLOADED}")


def wait_uploaded(port: int, timeout_s: float) -> float:
    """Seconds until the server's unuploaded bytes are none (to within
    POLL_S); RuntimeError past ``timeout_s``."""
    started = time.monotonic()
    while True:
        try:
            if unuploaded_bytes(port) == 0:
                return time.monotonic() - started
        except urllib.error.URLError:
            pass  # the listener opens just after the Kafka one the start waits for
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"the backlog was not uploaded within {timeout_s} s")
        time.sleep(POLL_S)
