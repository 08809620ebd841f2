"""The engine on a data directory whose WAL lost acknowledged data: the open
is refused and writes nothing to the object store; with data loss accepted
it opens, logs the loss, and serves every record before the damage."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

import engine
from s3stream import StreamStoreConfig
from tests.engine.helpers_records import read_partition
from tests.engine.wal_damage import (
    TOPIC,
    acknowledged_then_killed,
    damage_record_holding,
    tree,
    value,
)
from wal import CorruptSegment


@pytest.fixture(scope="module")
def acknowledged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with 60 acknowledged records, all only in the WAL."""
    data_dir = tmp_path_factory.mktemp("acked") / "data"
    acknowledged_then_killed(data_dir, 60)
    return data_dir


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_an_intact_wal_replays_every_acknowledged_record(
    acknowledged: Path, tmp_path: Path
) -> None:
    data_dir = _copy(acknowledged, tmp_path / "data")
    with engine.open(data_dir) as e:
        assert [r.value for r in read_partition(e, TOPIC, 0)] == [value(i) for i in range(60)]


def test_a_damaged_wal_refuses_the_open_and_writes_nothing_to_the_object_store(
    acknowledged: Path, tmp_path: Path
) -> None:
    data_dir = _copy(acknowledged, tmp_path / "data")
    path, offset = damage_record_holding(data_dir, value(30))
    before = tree(data_dir)
    with pytest.raises(CorruptSegment) as raised:
        engine.open(data_dir)
    assert (raised.value.path, raised.value.offset) == (str(data_dir / "wal" / path.name), offset)
    assert raised.value.records_beyond >= 29  # the acknowledged records after it
    after = tree(data_dir)
    objects = {name: data for name, data in after.items() if name.startswith("objects")}
    assert objects == {n: d for n, d in before.items() if n.startswith("objects")}
    assert {n: d for n, d in after.items() if n.startswith("wal/0")} == {
        n: d for n, d in before.items() if n.startswith("wal/0")
    }


def test_accepting_data_loss_opens_and_logs_what_was_dropped(
    acknowledged: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = _copy(acknowledged, tmp_path / "data")
    path, offset = damage_record_holding(data_dir, value(30))
    config = engine.EngineConfig(store=StreamStoreConfig(accept_data_loss=True))
    with caplog.at_level(logging.WARNING), engine.open(data_dir, None, config) as e:
        values = [r.value for r in read_partition(e, TOPIC, 0)]
    assert values[:30] == [value(i) for i in range(30)]
    assert value(30) not in values
    dropped = [r.getMessage() for r in caplog.records if "damage dropped:" in r.getMessage()]
    assert len(dropped) == 1 and path.name in dropped[0] and f"bytes {offset}.." in dropped[0]
    # The partition's later records go with it (its offsets stay dense), and the log says why.
    later = [r.getMessage() for r in caplog.records if "WAL appends were dropped" in r.getMessage()]
    assert later and all("lost to the write-ahead log damage" in line for line in later)
    with engine.open(data_dir) as e:  # and afterwards it opens without the option
        assert [r.value for r in read_partition(e, TOPIC, 0)] == values
