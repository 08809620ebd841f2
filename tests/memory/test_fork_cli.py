"""``tidelog fork``: the command makes the fork ``Engine.fork`` makes — at
every partition's high watermark, at a vector's positions, or at what the
parent held at a time — and refuses a data directory a server holds, a
vector that does not parse and a fork point inside a stored batch, each
with its exit status and a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import engine
import native
from engine.cli.main import main
from engine.memory.vector import OffsetVector, Position
from engine.types import TopicPartition
from native import RecordSpec

T0 = 1_700_000_000_000


def _fill(data_dir: Path) -> None:
    """orders: partition 0 holds records 0-3 (one batch each, timestamps
    T0+0..3), partition 1 one batch of two records."""
    with engine.open(data_dir) as e:
        e.create_topic("orders", 2)
        for i in range(4):
            batch = native.encode_batch([RecordSpec(T0 + i, b"k", b"v%d" % i, ())])
            e.produce("orders", 0, batch)
        two = [RecordSpec(T0, b"a", b"x", ()), RecordSpec(T0, b"b", b"y", ())]
        e.produce("orders", 1, native.encode_batch(two))


def _values(e: engine.Engine, topic: str, partition: int) -> list[bytes | None]:
    out: list[bytes | None] = []
    offset = 0
    while offset < e.partition(topic, partition).high_watermark:
        fetched = e.fetch(topic, partition, offset)
        for payload in fetched.records:
            out.extend(record.value for record in native.decode_records(payload))
        offset = fetched.next_offset
    return out


def _fork(capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str) -> tuple[int, str, str]:
    code = main(["fork", *args, "--data-dir", str(data_dir)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_fork_at_the_high_watermarks_reads_the_parents_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(tmp_path)
    code, out, err = _fork(capsys, tmp_path, "orders", "orders.eval", "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["partitions"] == [
        {"partition": 0, "fork_point": 4},
        {"partition": 1, "fork_point": 2},
    ]
    with engine.open(tmp_path) as e:
        assert _values(e, "orders.eval", 0) == [b"v0", b"v1", b"v2", b"v3"]
        assert _values(e, "orders.eval", 1) == [b"x", b"y"]


def test_a_fork_at_a_vector_and_at_a_time_stops_where_they_say(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(tmp_path)
    vector = OffsetVector({TopicPartition("orders", 0): Position(2)})
    code, out, err = _fork(capsys, tmp_path, "orders", "at-vector", "--at", vector.to_text())
    assert code == 0, err
    # Tab-separated in a pipe; the partition the vector leaves out forks at
    # its high watermark.
    assert out.splitlines() == ["at-vector\t0\t2", "at-vector\t1\t2"]
    code, out, err = _fork(
        capsys, tmp_path, "orders", "at-time", "--at-time", str(T0 + 1), "-c", "retention.ms=1000"
    )
    assert code == 0, err
    with engine.open(tmp_path) as e:
        assert _values(e, "at-vector", 0) == [b"v0", b"v1"]
        assert _values(e, "at-time", 0) == [b"v0", b"v1"]
        configs = {c.name: c.value for c in e.describe_topic("at-time").configs}
        assert configs["retention.ms"] == "1000"
        assert _values(e, "orders", 0) == [b"v0", b"v1", b"v2", b"v3"]


def test_what_cannot_be_forked_is_refused_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(tmp_path)
    code, _, err = _fork(capsys, tmp_path, "orders", "bad", "--at", "{not json")
    assert code == 2 and "tidelog fork:" in err
    inside = OffsetVector({TopicPartition("orders", 1): Position(1)})
    code, _, err = _fork(capsys, tmp_path, "orders", "inside", "--at", inside.to_text())
    assert code == 1 and "[0, 2)" in err  # the batch's bounds: fork points that work
    code, _, err = _fork(capsys, tmp_path, "nothing", "copy")
    assert code == 1 and "'nothing' does not exist" in err
    with engine.open(tmp_path):
        code, _, err = _fork(capsys, tmp_path, "orders", "held")
        assert code == 2 and "tidelog fork:" in err
    with engine.open(tmp_path) as e:
        assert {"bad", "inside", "copy", "held"}.isdisjoint(e.list_topics())
