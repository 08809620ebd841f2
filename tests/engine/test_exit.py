"""A script that opens an engine without ``with`` or ``close()`` and then
raises, or is interrupted with Ctrl-C, exits: the engine's threads do not
keep the interpreter alive, and every record whose future resolved is found
when the data directory is opened again.

The script runs in a child process, as a user's script would; the parent
gives it a timeout and reads what the child printed as acknowledged.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import engine
from engine.exit_close import EXIT_CLOSE_TIMEOUT_S
from tests.engine.conftest import QUIET_STORE
from tests.engine.frozen_link import FrozenLink
from tests.engine.helpers_records import child_env, read_partition
from tests.s3stream.conftest import S3Endpoint, s3_endpoint  # noqa: F401

EXIT_TIMEOUT_S = 60
RECORDS = 200

SCRIPT = """
import json, os, signal, sys, time
import engine
from s3stream import StreamStoreConfig

# Uploads only at close: what the child acknowledged is in the WAL alone.
config = engine.EngineConfig(
    store=StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600)
)
e = engine.open(sys.argv[1], sys.argv[3] if len(sys.argv) > 3 else None, config)
e.create_topic("exit", partitions=1)
producer = e.producer(linger_ms=5)
futures = [producer.send("exit", str(i).encode()) for i in range({records})]
acked = [[int(f.result(30).offset), i] for i, f in enumerate(futures)]
print(json.dumps(acked), flush=True)
if sys.argv[2] == "raise":
    input()  # the parent may take the object store away first
    raise RuntimeError("the script fails with the engine still open")
print("waiting for SIGINT", flush=True)
time.sleep(3600)
"""


def _interruptible() -> None:
    """In the child before it execs: SIGINT at its default, as in a script
    run at a terminal, which Python turns into KeyboardInterrupt. A child
    inherits an ignored SIGINT (a shell's background job, some CI runners
    start the suite so), and Python then leaves it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("ending", ["raise", "sigint"])
def test_script_that_raises_with_the_engine_open_exits_and_keeps_acked_records(
    tmp_path: Path, ending: str
) -> None:
    data = tmp_path / "data"
    child = subprocess.Popen(
        [sys.executable, "-c", SCRIPT.format(records=RECORDS), str(data), ending],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        preexec_fn=_interruptible,  # noqa: PLW1509 - signal state only, nothing a thread holds
    )
    try:
        assert child.stdout is not None
        acked = json.loads(child.stdout.readline())
        if ending == "raise":
            assert child.stdin is not None
            child.stdin.write("\n")
            child.stdin.flush()
        if ending == "sigint":
            assert child.stdout.readline().strip() == "waiting for SIGINT"
            child.send_signal(signal.SIGINT)
        try:
            _, stderr = child.communicate(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the script did not exit within {EXIT_TIMEOUT_S} s of {ending}")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode != 0
    expected = "RuntimeError" if ending == "raise" else "KeyboardInterrupt"
    assert expected in stderr
    assert len(acked) == RECORDS

    with engine.open(data, None, engine.EngineConfig(store=QUIET_STORE)) as e:
        found = {r.offset: r.value for r in read_partition(e, "exit", 0)}
    for offset, i in acked:
        assert found.get(offset) == str(i).encode(), f"record {i} at offset {offset}"
    assert len(found) == RECORDS


SHORT_EXIT_BOUND_S = 2.0
SHORT_EXIT_BOUND = (
    f"import engine.exit_close\nengine.exit_close.EXIT_CLOSE_TIMEOUT_S = {SHORT_EXIT_BOUND_S}\n"
)
"""Read by the exit hook when it runs, so set before the script opens anything."""


@pytest.mark.slow
def test_exit_with_an_unreachable_object_store_is_bounded_and_keeps_acked_records(
    tmp_path: Path,
    s3_endpoint: S3Endpoint,  # noqa: F811
) -> None:
    """The object store stops answering before the script raises: the
    upload at exit cannot finish, the interpreter exits after
    EXIT_CLOSE_TIMEOUT_S, and the WAL brings every acknowledged record back.
    The child's bound is cut to SHORT_EXIT_BOUND_S: the bound, not its
    length, is what is shown, and the test would wait out the whole of it."""
    data = tmp_path / "data"
    prefix = f"exit-{uuid.uuid4().hex}"
    parsed = urlsplit(s3_endpoint.url)
    assert parsed.hostname is not None and parsed.port is not None
    with FrozenLink((parsed.hostname, parsed.port)) as link:
        through_link = replace(s3_endpoint, url=f"http://127.0.0.1:{link.port}")
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SHORT_EXIT_BOUND + SCRIPT.format(records=RECORDS),
                str(data),
                "raise",
                through_link.store_url(prefix),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        try:
            assert child.stdout is not None and child.stdin is not None
            acked = json.loads(child.stdout.readline())
            link.freeze()
            child.stdin.write("\n")
            child.stdin.flush()
            try:
                _, stderr = child.communicate(timeout=EXIT_CLOSE_TIMEOUT_S + 30)
            except subprocess.TimeoutExpired:
                pytest.fail("the script did not exit with its object store unreachable")
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert "RuntimeError" in stderr
    # The bound, the child's own, not a finished upload, ended it.
    assert f"did not close within {SHORT_EXIT_BOUND_S:.0f} s" in stderr
    assert len(acked) == RECORDS
    config = engine.EngineConfig(store=QUIET_STORE)
    with engine.open(data, s3_endpoint.store_url(prefix), config) as e:
        found = {r.offset: r.value for r in read_partition(e, "exit", 0)}
    for offset, i in acked:
        assert found.get(offset) == str(i).encode(), f"record {i} at offset {offset}"


CUT_SHORT_SCRIPT = """
import atexit, json, os, sys
from unittest import mock

# Registered before engine is imported, so it runs after engine's own exit
# hook (atexit runs last in, first out): what that hook left.
atexit.register(lambda: print("report at exit:", e.close_report is not None, flush=True))

import engine
from s3stream import StreamStoreConfig
from wal import closing

config = engine.EngineConfig(
    store=StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600)
)
e = engine.open(sys.argv[1], None, config)
e.create_topic("exit", partitions=1)
with e.producer(linger_ms=5) as producer:
    futures = [producer.send("exit", str(i).encode()) for i in range({records})]
    print(json.dumps([i for i, f in enumerate(futures) if f.result(30)]), flush=True)
run = closing.run_step

def interrupted(owner, name, *args):
    if f"{{owner}}.{{name}}" == sys.argv[2]:
        raise KeyboardInterrupt
    run(owner, name, *args)

with mock.patch.object(closing, "run_step", interrupted):
    try:
        e.close()
    except KeyboardInterrupt:
        print("close cut short", flush=True)
if sys.argv[3] == "_exit":
    os._exit(0)
"""


@pytest.mark.parametrize("ending", ["exit", "_exit"])
@pytest.mark.parametrize("step", ["Engine.groups", "StreamStore.upload", "GroupCommitter.seal"])
def test_a_close_cut_short_and_never_called_again_leaves_the_directory_to_the_next_open(
    tmp_path: Path, step: str, ending: str
) -> None:
    """At a normal exit the close is finished (engine/exit_close.py); at
    ``os._exit`` nothing runs, and the WAL directory's lock (an flock) goes
    with the process: either way the next process opens the directory and
    finds every acknowledged record."""
    data = tmp_path / "data"
    done = subprocess.run(
        [sys.executable, "-c", CUT_SHORT_SCRIPT.format(records=RECORDS), str(data), step, ending],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=EXIT_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    acked = json.loads(lines[0])
    assert len(acked) == RECORDS
    assert lines[1] == "close cut short"
    if ending == "exit":
        assert lines[2] == "report at exit: True", done.stdout
    else:
        assert len(lines) == 2, done.stdout
    with engine.open(data) as reopened:
        values = [r.value for r in read_partition(reopened, "exit", 0)]
    assert values == [str(i).encode() for i in acked]
