"""Stateless takeover: a second engine opens the same bucket and fences the first.

The guarantee: opening an engine bumps the manifest's writer epoch with a
conditional write, so from then on the old owner (A) can commit nothing. The
new owner (B) serves everything A had uploaded (committed to the manifest)
before B opened, and appends after it with dense offsets. A learns that it
is fenced at its next manifest commit (an upload, a flush, a topic change)
or its next fence check (one per upload interval); from then on every
produce raises ``engine.Fenced``. Appends A acknowledged in `local` mode
and had not uploaded when B opened (acknowledged before B opened, or after
it but before A discovered the fence) went to A's WAL only: B never sees
them, nothing A does after B opened (its close included) reaches the
bucket, and A's directory opened again does not replay them.

A is a child process (child_engine.py) that uploads only on flush or close
(so it never checks for a fence on its own); B is this process. Both use
moto's S3 server.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from pathlib import Path
from typing import Any

import engine
from engine.protocol.kafka_code import KafkaCode
from tests.engine.conftest import QUIET_STORE
from tests.engine.helpers_records import batch, child_command, child_env, read_partition

CONFIG = engine.EngineConfig(store=QUIET_STORE, cleaner_interval_s=3600)


class ChildEngine:
    """An engine in a child process, driven by JSON commands (child_engine.py)."""

    def __init__(self, data_dir: Path, object_store: str, log_dir: Path) -> None:
        self._stderr_path = log_dir / f"{data_dir.name}.stderr"
        self._stderr = self._stderr_path.open("wb")
        self.process = subprocess.Popen(
            child_command("child_engine.py", str(data_dir), object_store),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=child_env(),
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._next() == {"ok": "open"}

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next(self) -> Any:
        line = self._lines.get(timeout=120)
        if line is None:
            self.process.wait()
            raise AssertionError(f"the child died:\n{self._stderr_path.read_text()[-3000:]}")
        return json.loads(line)

    def call(self, *command: object) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._next()

    def close(self) -> Any:
        answer = self.call("close")
        assert self.process.wait(60) == 0
        return answer

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._stderr.close()


def values(e: engine.Engine, topic: str, partition: int) -> list[tuple[int, bytes | None]]:
    return [(r.offset, r.value) for r in read_partition(e, topic, partition)]


def expected(*runs: list[str], start: int = 0) -> list[tuple[int, bytes | None]]:
    flat = [v.encode() for run in runs for v in run]
    return list(enumerate(flat, start))


def assert_fenced(answer: Any) -> None:
    assert isinstance(answer, dict) and "error" in answer, answer
    assert answer["error"] == "Fenced" and answer["fenced"], answer
    assert answer["code"] == KafkaCode.NOT_LEADER_OR_FOLLOWER, answer
    message = answer["message"]
    assert "another engine opened this storage" in message and "epoch" in message, message


def test_new_owner_fences_the_old_one_and_serves_what_it_uploaded(
    tmp_path: Path, s3_url: str
) -> None:
    a = ChildEngine(tmp_path / "a", s3_url, tmp_path)
    try:
        assert a.call("create_topic", "agent", 2) == {"ok": "agent"}
        first = [f"a{i}" for i in range(20)]
        other = [f"o{i}" for i in range(7)]
        assert a.call("send", "agent", 0, first) == [{"ok": i} for i in range(20)]
        assert a.call("send", "agent", 1, other) == [{"ok": i} for i in range(7)]
        assert a.call("flush") == {"ok": True}

        with engine.open(tmp_path / "b", s3_url, CONFIG) as b:
            # B serves everything A uploaded before B opened.
            assert b.list_topics() == ["agent"]
            assert values(b, "agent", 0) == expected(first)
            assert values(b, "agent", 1) == expected(other)

            # A does not know yet: its appends are acknowledged from its WAL
            # alone, and B never sees them.
            late = ["late0", "late1"]
            assert a.call("send", "agent", 0, late) == [{"ok": 20}, {"ok": 21}]
            assert b.offsets("agent", 0) == (0, 20)

            # A's next manifest commit discovers the fence; from then on every
            # produce, flush and topic change raises Fenced.
            assert_fenced(a.call("flush"))
            for answer in a.call("send", "agent", 0, ["x", "y"]):
                assert_fenced(answer)
            assert_fenced(a.call("produce", "agent", 1, "z"))
            assert_fenced(a.call("create_topic", "other", 1))
            assert_fenced(a.call("flush"))
            assert a.close() == {"ok": None}

            # B appends after A's data, densely.
            with b.producer() as producer:
                mine = [f"b{i}" for i in range(10)]
                offsets = [producer.send("agent", v.encode(), partition=0) for v in mine]
                assert [f.result().offset for f in offsets] == list(range(20, 30))
                assert producer.send("agent", b"b-other", partition=1).result().offset == 7
            assert values(b, "agent", 0) == expected(first, mine)
            assert values(b, "agent", 1) == expected(other, ["b-other"])
            assert b.offsets("agent", 0) == (0, 30)
    finally:
        a.kill()

    # Nothing A did after B opened reached the bucket: a fresh engine sees B's log.
    with engine.open(tmp_path / "c", s3_url, CONFIG) as c:
        assert c.list_topics() == ["agent"]
        assert values(c, "agent", 0) == expected(first, mine)
        assert values(c, "agent", 1) == expected(other, ["b-other"])


def test_appends_the_old_owner_had_not_uploaded_stay_in_its_wal(
    tmp_path: Path, s3_url: str
) -> None:
    a = ChildEngine(tmp_path / "a", s3_url, tmp_path)
    try:
        assert a.call("create_topic", "agent", 1) == {"ok": "agent"}
        uploaded = [f"a{i}" for i in range(10)]
        assert a.call("send", "agent", 0, uploaded) == [{"ok": i} for i in range(10)]
        assert a.call("flush") == {"ok": True}
        local = [f"wal{i}" for i in range(5)]
        assert a.call("send", "agent", 0, local) == [{"ok": i} for i in range(10, 15)]

        with engine.open(tmp_path / "b", s3_url, CONFIG) as b:
            assert values(b, "agent", 0) == expected(uploaded)
            with b.producer() as producer:
                mine = [f"b{i}" for i in range(3)]
                sent = [producer.send("agent", v.encode(), partition=0) for v in mine]
                assert [f.result().offset for f in sent] == [10, 11, 12]
            assert b.flush(30)
            assert_fenced(a.call("flush"))
            assert_fenced(a.call("send", "agent", 0, ["after"])[0])
            assert a.close() == {"ok": None}
            assert values(b, "agent", 0) == expected(uploaded, mine)
    finally:
        a.kill()

    # A's data directory, opened again, takes over in turn: B's records keep
    # their offsets; A's old WAL appends never displace them.
    with engine.open(tmp_path / "a", s3_url, CONFIG) as again:
        log = values(again, "agent", 0)
        assert log[:13] == expected(uploaded, mine)
        assert [offset for offset, _ in log] == list(range(len(log)))
        # Acknowledged before B opened, never uploaded: lost, not replayed.
        assert not [value for _, value in log if value is not None and value.startswith(b"wal")]


def test_a_fenced_owners_stale_wal_adds_nothing_after_the_new_owners_records(
    tmp_path: Path, s3_url: str
) -> None:
    """A's appends acknowledged after B opened were in A's WAL only; B wrote
    other records at those offsets. When A's directory is opened again, A's
    stale appends must not reappear after B's records (Kafka truncates a
    fenced leader's divergent log by leader epoch): the log is exactly what
    B acknowledged."""
    a = ChildEngine(tmp_path / "a", s3_url, tmp_path)
    try:
        assert a.call("create_topic", "agent", 1) == {"ok": "agent"}
        assert a.call("produce", "agent", 0, "a0") == {"ok": 0}
        assert a.call("flush") == {"ok": True}
        for i in range(1, 6):  # one WAL entry each, offsets 1..5, never uploaded
            assert a.call("produce", "agent", 0, f"stale{i}") == {"ok": i}
        with engine.open(tmp_path / "b", s3_url, CONFIG) as b:
            for i in range(3):  # offsets 1..3
                assert b.produce("agent", 0, batch([b"b%d" % i])).base_offset == i + 1
            assert b.flush(30)
            assert_fenced(a.call("flush"))
            assert a.close() == {"ok": None}
    finally:
        a.kill()
    with engine.open(tmp_path / "a", s3_url, CONFIG) as again:
        assert values(again, "agent", 0) == expected(["a0", "b0", "b1", "b2"])
