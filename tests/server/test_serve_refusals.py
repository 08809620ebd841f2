"""``tidelog serve`` refusing to start says so in one line (what, which file,
what to do) and exits non-zero: no traceback."""

from __future__ import annotations

import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.engine.helpers_records import child_env
from tests.engine.wal_damage import acknowledged_then_killed, damage_record_holding, value
from tests.server.conftest import free_port
from wal import WriteAheadLog


def _serve(
    *args: str, env: dict[str, str] | None = None, limit_file_size: int = 0
) -> tuple[int, str]:
    def limit() -> None:
        if limit_file_size:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

    result = subprocess.run(
        [sys.executable, "-m", "engine", "serve", "--listen", f"127.0.0.1:{free_port()}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env or child_env(),
        preexec_fn=limit,
        check=False,
    )
    return result.returncode, result.stderr


def _the_one_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, stderr
    return errors[0]


def test_a_damaged_wal_is_refused_with_the_file_and_the_recover_command(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    acknowledged_then_killed(data_dir, 20)
    path, offset = damage_record_holding(data_dir, value(10))
    code, stderr = _serve("--data-dir", str(data_dir))
    assert code == 1
    line = _the_one_error(stderr)
    assert f"{path} at byte {offset}" in line
    assert f"tidelog recover --accept-data-loss {data_dir}" in line


def test_a_data_directory_in_use_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with WriteAheadLog(data_dir / "wal"):  # this process holds the directory's lock
        code, stderr = _serve("--data-dir", str(data_dir))
    assert code == 1
    line = _the_one_error(stderr)
    assert f"{data_dir} is in use by another tidelog process" in line


def test_an_unreadable_config_is_refused(tmp_path: Path) -> None:
    code, stderr = _serve("--config", str(tmp_path), "--data-dir", str(tmp_path / "data"))
    assert code == 2
    assert str(tmp_path) in _the_one_error(stderr)


def test_an_object_store_that_fails_at_open_is_refused(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = child_env(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    config = tmp_path / "tidelog.toml"
    # The default waits half a minute; a refused connection fails in
    # milliseconds, so a second holds several retries, each logged.
    config.write_text("[store]\nopen_timeout_s = 1.0\n")
    code, stderr = _serve(
        "--data-dir",
        str(tmp_path / "data"),
        "--object-store",
        f"s3://bucket/prefix?endpoint={closed}&max_attempts=1",
        "--config",
        str(config),
        env=env,
    )
    assert code == 1
    line = _the_one_error(stderr)
    assert "the object store failed" in line and closed in line
    assert "retrying for" in stderr  # it said what it was waiting for


def test_a_wal_segment_that_cannot_be_preallocated_is_refused_with_the_space(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    code, stderr = _serve("--data-dir", str(data_dir), limit_file_size=1 << 20)
    assert code == 1
    line = _the_one_error(stderr)
    segment = data_dir / "wal" / "00000000000000000001.wal"
    assert f"cannot preallocate write-ahead log segment {segment}" in line
    assert f"needs {64 * 1024 * 1024} bytes" in line and "bytes are free" in line


def test_a_port_in_use_is_refused(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "engine",
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                "--data-dir",
                str(tmp_path / "data"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=child_env(),
            check=False,
        )
    assert result.returncode == 1
    assert str(port) in _the_one_error(result.stderr)


def test_an_object_store_url_of_no_kind_is_a_bad_flag_and_makes_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    code, stderr = _serve("--data-dir", str(data_dir), "--object-store", "ftp://ops:pw@host/x")
    assert code == 2  # a bad flag, as docs/server.md says
    line = _the_one_error(stderr)
    assert "unsupported object store URL 'ftp://ops:***@host/x' (file://, s3://" in line
    assert not data_dir.exists()


def test_a_data_directory_that_is_a_file_is_named_as_such(tmp_path: Path) -> None:
    data_file = tmp_path / "data"
    data_file.write_text("")
    code, stderr = _serve("--data-dir", str(data_file))
    assert code == 1
    assert f"cannot serve: {data_file} is not a directory" in _the_one_error(stderr)
