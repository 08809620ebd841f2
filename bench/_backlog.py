"""The server's unuploaded backlog, read from its /metrics, for a produce
phase whose clock stops at the last delivery: the bytes acknowledged from
the WAL and not yet in an uploaded object (up to max_unuploaded_bytes) are
uploaded after it, and what a MiB costs the server all told is counted
until they are (kafka_bench's ``server_produce_uploaded_ms_per_mib``)."""

from __future__ import annotations

import http.client
import re
import time
import tomllib
import urllib.request
from pathlib import Path

from engine.server.config import parse_address
from engine.server.http_config import DEFAULT_HTTP_PORT

UNUPLOADED = "tidelog_wal_unuploaded_bytes"
POLL_S = 0.25
"""Between two reads of /metrics: each costs the server a rendering of them
(counted in the CPU it measures), so a few a second, not a busy poll."""


HTTP_TABLE = re.compile(r"^[ \t]*\[http\][ \t]*(#.*)?$", re.MULTILINE)
"""The ``[http]`` header of a config that has one without a listener."""


WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
"""A listener bound to every interface is polled on its loopback."""


def with_metrics(scratch: Path, config: Path | None, port: int) -> tuple[Path, tuple[str, int]]:
    """A server config with /metrics on: ``config`` (if any) with an
    ``[http]`` listener on ``port`` added, or its own listener if it names
    one. Returns the file to start the server with and the address its
    /metrics is polled at: the listener's host, not always 127.0.0.1, which
    a listener on another address does not answer."""
    text = config.read_text(encoding="utf-8") if config is not None else ""
    table = tomllib.loads(text).get("http")
    if table is None:
        text = f'{text}\n[http]\nlisten = "127.0.0.1:{port}"\n'
    elif table.get("listen") is not None:
        assert config is not None
        host, listened = parse_address(str(table["listen"]), default_port=DEFAULT_HTTP_PORT)
        if listened == 0:
            # The system picks the port as the server starts, and the
            # bench could only poll port 0: every wait would time out as
            # a backlog never uploaded.
            raise ValueError(f"{config}: its [http] listener has no fixed port to poll /metrics on")
        return config, (WILDCARDS.get(host, host), listened)
    else:
        # An [http] table of its own, with no listener: a second [http]
        # would make the file no TOML the server could read.
        header = HTTP_TABLE.search(text)
        if header is None:
            raise ValueError(f"{config}: its http settings have no [http] line to listen under")
        listen = f'\nlisten = "127.0.0.1:{port}"'
        text = text[: header.end()] + listen + text[header.end() :]
    written = scratch / "server-with-metrics.toml"
    written.write_text(text, encoding="utf-8")
    return written, ("127.0.0.1", port)


def metrics_url(address: tuple[str, int]) -> str:
    host, port = address
    return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"


def unuploaded_bytes(address: tuple[str, int], timeout_s: float = 30.0) -> int:
    """The server's unuploaded bytes now (its /metrics gauge)."""
    url = metrics_url(address)
    with urllib.request.urlopen(url, timeout=timeout_s) as answer:
        text: str = answer.read().decode()
    for line in text.splitlines():
        if line.startswith(UNUPLOADED + " "):
            return int(float(line.rsplit(" ", 1)[1]))
    raise RuntimeError(f"{url} reports no {UNUPLOADED}")


def wait_uploaded(address: tuple[str, int], timeout_s: float) -> float:
    """Seconds until the server's unuploaded bytes are none (to within
    POLL_S); RuntimeError past ``timeout_s``."""
    started = time.monotonic()
    while True:
        left = timeout_s - (time.monotonic() - started)
        try:
            # No read outlasts the wait's own timeout.
            if unuploaded_bytes(address, max(left, POLL_S)) == 0:
                return time.monotonic() - started
        except (OSError, http.client.HTTPException):
            # Not listening yet (it opens just after the Kafka listener the
            # start waits for), or a connection dropped or a read timed out
            # (URLError, RemoteDisconnected, TimeoutError are all OSError):
            # asked again at the next poll.
            pass
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"the backlog was not uploaded within {timeout_s} s")
        time.sleep(POLL_S)
