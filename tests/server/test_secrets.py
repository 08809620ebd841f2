"""The object store's secret key: never in a log line or an error (the URL
is shown redacted), given by a file or the environment instead of the URL,
against moto's S3 server on loopback."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from s3stream.store import S3Store, open_store, redact_url, secret_parameters
from tests.server.conftest import ServerProcess, free_port
from tests.server.test_limits import Canary

SECRET = "Sekr3t/Key+Never-Logged"
"""A secret with characters that a URL percent-encodes."""


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    werkzeug = logging.getLogger("werkzeug")
    werkzeug_level = werkzeug.level  # kept for the modules that run after this one
    werkzeug.setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        store = S3Store(
            "secrets",
            endpoint_url=endpoint,
            region="us-east-1",
            access_key_id="AK",
            secret_access_key="x",
        )
        store.create_bucket_if_missing()
        store.close()
        yield endpoint
    finally:
        server.stop()
        werkzeug.setLevel(werkzeug_level)


def s3_url(endpoint: str, **parameters: str) -> str:
    query = "&".join(f"{name}={quote(value, safe='')}" for name, value in parameters.items())
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    return f"s3://secrets/{prefix}?endpoint={quote(endpoint, safe='')}&region=us-east-1&{query}"


def assert_secret_nowhere(text: str) -> None:
    for form in (SECRET, quote(SECRET, safe=""), quote(SECRET)):
        assert form not in text, f"the secret ({form}) is in:\n{text}"


def serve_once(tmp_path: Path, object_store: str) -> subprocess.CompletedProcess[str]:
    """``tidelog serve`` that is expected to fail at start (giving an
    unreachable store one second, not the default half minute)."""
    config = tmp_path / "tidelog.toml"
    config.write_text("[store]\nopen_timeout_s = 1.0\n")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "serve",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--data-dir",
            str(tmp_path / "data"),
            "--object-store",
            object_store,
            "--config",
            str(config),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_secret_in_the_url_is_in_no_log_line(tmp_path: Path, moto_endpoint: str) -> None:
    url = s3_url(moto_endpoint, access_key_id="AK", secret_access_key=SECRET)
    server = ServerProcess(tmp_path / "data", object_store=url).start()
    try:
        canary = Canary(server.bootstrap)
        canary.check()
        canary.close()
        assert server.stop() == 0
    finally:
        server.kill()
    log = server.log()
    assert_secret_nowhere(log)
    assert "secret_access_key=***" in log
    assert "the object store URL carries secret_access_key in clear" in log


@pytest.mark.parametrize(
    "failure",
    ["unreachable", "unknown-parameter", "bad-scheme", "bad-value"],
)
def test_a_failing_store_reports_without_the_secret(
    tmp_path: Path, moto_endpoint: str, failure: str
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    url = {
        "unreachable": s3_url(
            closed,
            secret_access_key=SECRET,
            access_key_id="AK",
            max_attempts="1",
            connect_timeout="1",
        ),
        "unknown-parameter": s3_url(moto_endpoint, secret_access_key=SECRET, mystery="1"),
        "bad-scheme": f"s4://secrets/p?secret_access_key={quote(SECRET, safe='')}",
        "bad-value": s3_url(moto_endpoint, secret_access_key=SECRET, part_size="many"),
    }[failure]
    result = serve_once(tmp_path, url)
    if failure == "bad-scheme":  # refused before the engine opens, as a bad flag
        assert result.returncode == 2, result.stderr
        assert "unsupported object store URL 's4://" in result.stderr
    else:
        assert result.returncode == 1, result.stderr
        assert "cannot serve" in result.stderr
    assert_secret_nowhere(result.stdout + result.stderr)


def test_the_secret_key_from_a_file_works_and_is_not_logged(
    tmp_path: Path, moto_endpoint: str
) -> None:
    key_file = tmp_path / "s3-secret"
    key_file.write_text(SECRET + "\n")
    url = s3_url(moto_endpoint, access_key_id="AK", secret_access_key_file=str(key_file))
    store = open_store(url)
    try:
        assert store._client._request_signer._credentials.secret_key == SECRET
    finally:
        store.close()
    server = ServerProcess(tmp_path / "data", object_store=url).start()
    try:
        canary = Canary(server.bootstrap)
        canary.check()
        canary.close()
        assert server.stop() == 0
    finally:
        server.kill()
    assert_secret_nowhere(server.log())
    assert "in clear" not in server.log()


def test_a_missing_secret_file_is_a_clear_error(tmp_path: Path, moto_endpoint: str) -> None:
    missing = tmp_path / "no-such-secret"
    result = serve_once(tmp_path, s3_url(moto_endpoint, secret_access_key_file=str(missing)))
    assert result.returncode == 1
    assert f"cannot read secret_access_key_file {missing}" in result.stderr
    assert not (tmp_path / "data" / "wal").exists()


def test_both_a_secret_and_a_secret_file_is_an_error(tmp_path: Path) -> None:
    key_file = tmp_path / "s3-secret"
    key_file.write_text(SECRET)
    url = s3_url(
        "http://127.0.0.1:1", secret_access_key=SECRET, secret_access_key_file=str(key_file)
    )
    with pytest.raises(ValueError, match="both secret_access_key and secret_access_key_file"):
        open_store(url)


def test_without_keys_in_the_url_credentials_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    store = open_store(s3_url("http://127.0.0.1:1"))
    try:
        credentials = store._client._request_signer._credentials
        assert (credentials.access_key, credentials.secret_key) == ("from-env", SECRET)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "s3://b/p?secret_access_key=abc&access_key_id=AK&region=eu",
            "s3://b/p?secret_access_key=***&access_key_id=AK&region=eu",
        ),
        (
            "s3://b?endpoint=http%3A%2F%2Fuser%3Apw%40host%3A9000&session_token=t",
            "s3://b?endpoint=http://user:***@host:9000&session_token=***",
        ),
        ("s3://b?secret_access_key_file=/run/key", "s3://b?secret_access_key_file=/run/key"),
        # A secret with an '&' or a '#' not percent-encoded: its tail parses as
        # another parameter, or as the fragment, and is shown as neither.
        (
            "s3://b/p?secret_access_key=ab&cdTAIL=x&region=eu",
            "s3://b/p?secret_access_key=***&***&region=eu",
        ),
        ("s3://b/p?secret_access_key=ab#cdTAIL", "s3://b/p?secret_access_key=***#***"),
        ("file:///var/lib/tidelog/objects", "file:///var/lib/tidelog/objects"),
        ("https://user:pw@example.com/x", "https://user:***@example.com/x"),
    ],
)
def test_redacted_urls(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "TAIL" not in redact_url(url)
    assert ("***" in shown) == bool(secret_parameters(url) or ":pw@" in url or "%3Apw" in url)


def test_a_secret_holding_an_unencoded_ampersand_is_not_shown_in_the_error() -> None:
    with pytest.raises(ValueError, match="unknown s3 URL parameters") as raised:
        open_store("s3://b/p?secret_access_key=abc&defTAIL&region=eu")
    assert "TAIL" not in str(raised.value)
    assert "%26" in str(raised.value)  # says how to write the '&'


def test_an_unknown_parameter_is_named_when_no_secret_is_in_the_url() -> None:
    with pytest.raises(ValueError, match="unknown s3 URL parameters regoin"):
        open_store("s3://b/p?regoin=eu")
