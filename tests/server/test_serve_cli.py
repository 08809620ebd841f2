"""``tidelog serve`` as an operator runs it: defaults, flags, the config
file, the advertised listener, signals and the activity log."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from engine.server.config import ConfigFileError, load_config_file
from tests.server.conftest import ServerProcess, free_port

DEFAULT_PORT = 9092
"""Bound, or found free and then served on, by tests of this module only: a
module runs whole in one pytest-xdist worker (tests/xdist_scheduling.py), so
they never overlap."""


def _wait_for(path: Path, text: str, process: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = path.read_text(errors="replace") if path.exists() else ""
        if text in log:
            return log
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode} before {text!r}:\n{log}")
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged in {timeout} s:\n{path.read_text()}")


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_SERVE_ON_ANOTHER_DEFAULT_PORT = """
import sys
import engine.server.config as config
port = int(sys.argv.pop(1))
init = config.ServerConfig.__init__
def on_port(self, *args, **kwargs):
    kwargs.setdefault("port", port)
    init(self, *args, **kwargs)
config.ServerConfig.__init__ = on_port
from engine.cli import main
raise SystemExit(main())
"""
"""``tidelog serve`` with the built-in default port replaced by argv[1]:
the same no-flags path, for a machine where 9092 is taken (a developer's
own Kafka)."""


def serve_with_no_flags() -> tuple[list[str], int]:
    """The command line of ``tidelog serve`` with no flags, and the port it
    will listen on: 9092 when free, else a free port put in its place."""
    if _port_is_free(DEFAULT_PORT):
        return [sys.executable, "-m", "engine", "serve"], DEFAULT_PORT
    port = free_port()
    return [sys.executable, "-c", _SERVE_ON_ANOTHER_DEFAULT_PORT, str(port), "serve"], port


def check_serve_with_no_flags(tmp_path: Path, signum: int) -> int:
    """Runs ``tidelog serve`` with no flags in ``tmp_path``, produces a record,
    stops it with ``signum``, checks the data landed in ./tidelog-data;
    returns the port it listened on."""
    command, port = serve_with_no_flags()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=log)
    try:
        _wait_for(log_path, f"listening on 127.0.0.1:{port}", process, 60)
        producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{port}", acks="all")
        metadata = producer.send("first", b"hello").get(timeout=30)
        producer.close()
        assert (metadata.partition, metadata.offset) == (0, 0)
        process.send_signal(signum)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log_path.read_text()
    assert "engine closed" in text
    data = tmp_path / "tidelog-data"
    assert (data / "objects").is_dir()
    assert any(data.rglob("*")), "the data directory is empty"
    return port


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_with_no_flags_uses_the_embedded_default(tmp_path: Path, signum: int) -> None:
    """The README's first command: 127.0.0.1:9092 (another port if 9092 is
    taken on this machine) and ./tidelog-data, with the WAL and a local
    object store inside; a signal shuts it down cleanly."""
    check_serve_with_no_flags(tmp_path, signum)


def test_the_default_check_passes_while_something_else_holds_9092(tmp_path: Path) -> None:
    """A developer running Kafka on 9092 can still run the suite: with the
    port held (here by this test, if it was free), the default path is
    checked on another port."""
    with contextlib.ExitStack() as held:
        if _port_is_free(DEFAULT_PORT):
            kafka = held.enter_context(socket.socket())
            kafka.bind(("127.0.0.1", DEFAULT_PORT))
            kafka.listen()
        assert not _port_is_free(DEFAULT_PORT)
        port = check_serve_with_no_flags(tmp_path, signal.SIGTERM)
    assert port != DEFAULT_PORT


def test_restart_after_clean_shutdown_keeps_data_and_reports_recovery(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        producer = KafkaProducer(bootstrap_servers=server.bootstrap, acks="all")
        for i in range(10):
            producer.send("kept", str(i).encode()).get(timeout=30)
        producer.close()
        server.restart()
        assert "engine open: 1 topics, 1 partitions" in server.log().rsplit("--- start", 1)[-1]
        admin = KafkaAdminClient(bootstrap_servers=server.bootstrap)
        try:
            assert "kept" in admin.list_topics()
        finally:
            admin.close()
    finally:
        server.kill()


def test_advertised_listener_is_what_metadata_returns(tmp_path: Path) -> None:
    """Clients bootstrap on the listen address and then connect to what
    Metadata names: here a different name of the same host."""
    server = ServerProcess(tmp_path / "data")
    server.args = ["--advertised", f"localhost:{server.port}", "--node-id", "7"]
    server.start()
    try:
        admin = KafkaAdminClient(bootstrap_servers=server.bootstrap)
        try:
            cluster = admin.describe_cluster()
        finally:
            admin.close()
        assert cluster["controller_id"] == 7
        [broker] = cluster["brokers"]
        assert (broker["broker_id"], broker["host"], broker["port"]) == (
            7,
            "localhost",
            server.port,
        )
    finally:
        server.kill()


def test_config_file_sets_listener_engine_and_topic_defaults(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "tidelog.toml"
    config.write_text(
        f"""
[server]
listen = "127.0.0.1:{port}"
activity_log_interval_s = 0.2

[engine]
data_dir = "{tmp_path / "from-file"}"
default_partitions = 3

[topic_defaults]
"retention.ms" = "3600000"

[store]
upload_bytes = 1048576
upload_interval_s = 0.5
"""
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", "--config", str(config)],
            stdout=log,
            stderr=log,
        )
    try:
        _wait_for(log_path, f"listening on 127.0.0.1:{port}", process, 60)
        producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{port}", acks="all")
        producer.send("auto", b"x", partition=2).get(timeout=30)  # 3 partitions by default
        producer.close()
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}")
        try:
            described = admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, "auto", ["retention.ms"])],
                config_filter="all",
            )
        finally:
            admin.close()
        entry = described["topic"]["auto"]["retention.ms"]
        assert entry["value"] == "3600000"
        assert entry["config_source"] == "STATIC_BROKER_CONFIG"  # the engine's default
        # The activity line counts the uploads that [store]'s 0.5 s interval made.
        deadline = time.monotonic() + 30
        while not re.search(r"requests, .* [1-9]\d* uploads", log_path.read_text()):
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert (tmp_path / "from-file" / "objects").is_dir()


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ("[server]\nlisten = 'nowhere:port'\n", "host:port"),
        ("[server]\nmystery = 1\n", "unknown keys in [server]"),
        ("[wal]\n", "unknown sections"),
        ("[store]\nmystery = 1\n", "unknown keys in [store]"),
        ("[server\n", "tidelog.toml"),
        ("[server]\nlisten = ':9093'\n", "or 0.0.0.0:9093 to mean every interface"),
        ('[server]\n"max.connections" = 0\n', "max.connections must be a 64-bit integer, from 1"),
    ],
)
def test_bad_config_file_exits_with_the_reason(
    tmp_path: Path, document: str, complaint: str
) -> None:
    config = tmp_path / "tidelog.toml"
    config.write_text(document)
    result = subprocess.run(
        [sys.executable, "-m", "engine", "serve", "--config", str(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert complaint in result.stderr


def test_serve_help_lists_the_flags() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "engine", "serve", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert result.returncode == 0
    for flag in ("--listen", "--advertised", "--data-dir", "--object-store", "--config"):
        assert flag in result.stdout


def test_large_buffers_are_reused_on_glibc() -> None:
    """mallopt takes on glibc (the server's produce buffers then come from
    a heap that keeps freed memory), and is reported missing elsewhere."""
    import platform

    from engine.cli.serve import keep_freed_memory_for_reuse

    assert keep_freed_memory_for_reuse() == (platform.libc_ver()[0] == "glibc")


def test_the_config_file_in_the_server_doc_loads_as_documented(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "server.md").read_text()
    block = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "tidelog.toml"
    config.write_text(block)
    loaded = load_config_file(config)
    assert (loaded.server.advertised_host, loaded.server.advertised_port) == ("myhost", 9092)
    assert loaded.engine["groups"].group_initial_rebalance_delay_ms == 3000
    assert loaded.engine["transactions"].transaction_max_timeout_ms == 900000
    assert loaded.store.upload_bytes == 32 * 1024 * 1024
    assert loaded.schema_registry.listen == ("127.0.0.1", 8081)
    assert loaded.http.listen == ("127.0.0.1", 9644)
    assert loaded.http.object_store_window_s == 10.0
    assert loaded.server.log_format == "text"


def test_an_http_table_with_an_unknown_key_or_a_bad_log_format_is_refused(
    tmp_path: Path,
) -> None:
    config = tmp_path / "tidelog.toml"
    config.write_text('[http]\nlisten = "127.0.0.1:9644"\nport = 1\n')
    with pytest.raises(ConfigFileError, match=r"\[http\]: unknown keys \['port'\]"):
        load_config_file(config)
    config.write_text('[server]\nlog_format = "xml"\n')
    with pytest.raises(ConfigFileError, match="log_format must be"):
        load_config_file(config)


def test_listen_without_a_host_is_refused_with_how_to_mean_every_interface(
    tmp_path: Path,
) -> None:
    """``--listen :PORT`` would bind every interface without saying so."""
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "engine", "serve", "--listen", f":{port}"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert f"write 127.0.0.1:{port} for this machine only, or 0.0.0.0:{port}" in result.stderr
    assert not (tmp_path / "tidelog-data").exists()


def test_listening_beyond_loopback_warns_that_clients_are_not_authenticated(
    tmp_path: Path,
) -> None:
    everywhere = ServerProcess(tmp_path / "everywhere")
    everywhere.args = ["--listen", f"0.0.0.0:{everywhere.port}"]
    loopback = ServerProcess(tmp_path / "loopback")
    try:
        everywhere.start()
        loopback.start()
        warning = "clients are not authenticated"
        assert "WARNING tidelog.server: listening on 0.0.0.0 beyond this machine" in (
            everywhere.log()
        )
        assert warning in everywhere.log()
        assert warning not in loopback.log()
    finally:
        everywhere.kill()
        loopback.kill()


def _open_file_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-files line")


@pytest.mark.parametrize(("hard", "warns"), [(20_000, False), (2_000, True)])
def test_the_open_file_limit_is_raised_to_fit_max_connections(
    tmp_path: Path, hard: int, warns: bool
) -> None:
    """max.connections (10,000 by default) fits under the soft limit on open
    files when the hard limit allows; when it does not, the log says so."""
    import resource

    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < hard:
        pytest.skip(f"the hard limit on open files here is below {hard}")
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        # The limits set, then the server exec'd in their place (as a service manager would).
        limited = (
            "import os, resource, sys;"
            f"resource.setrlimit(resource.RLIMIT_NOFILE, (256, {hard}));"
            "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
        )
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                limited,
                "-m",
                "engine",
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
            ],
            cwd=tmp_path,
            stdout=log,
            stderr=log,
        )
    try:
        text = _wait_for(log_path, "listening on", process, 60)
        soft, _ = _open_file_limits(process.pid)
        assert soft == min(hard, 10_000 + 1024)
        assert ("this process may open only 2000 files" in text) == warns, text
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()


def _soft_open_files(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-files limit in /proc")


def test_the_open_files_limit_leaves_room_for_the_http_listeners_connections(
    tmp_path: Path,
) -> None:
    kafka_port, http_port, registry_port = free_port(), free_port(), free_port()
    config = tmp_path / "tidelog.toml"
    config.write_text(
        f"""
[server]
listen = "127.0.0.1:{kafka_port}"
"max.connections" = 100

[http]
listen = "127.0.0.1:{http_port}"
max_connections = 500

[schema_registry]
listen = "127.0.0.1:{registry_port}"
max_connections = 300
"""
    )
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 100 + 500 + 300 + 1024  # and room for the WAL and the object store
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the hard open-files limit is {hard}")
    # The child starts with a soft limit below what it needs.
    few_open_files = (
        f"import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (256, {hard}));"
        f" sys.argv = ['tidelog', 'serve', '--config', {str(config)!r}];"
        " runpy.run_module('engine', run_name='__main__')"
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", few_open_files], cwd=tmp_path, stdout=log, stderr=log
        )
    try:
        _wait_for(log_path, "operations endpoints on", process, 60)
        assert _soft_open_files(process.pid) == wanted
    finally:
        process.terminate()
        process.wait(60)
