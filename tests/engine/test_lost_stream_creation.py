"""A topic creation whose streams' manifest commit lost its answer, and
landed all the same: the running engine ends with the streams a restart
keeps, none of the failed creation's, though no restart came."""

from __future__ import annotations

from pathlib import Path

import pytest

import engine
from engine.errors import StoreWriteFailed
from s3stream.store import LocalStore
from tests.s3stream.faults import InjectedFault
from tests.s3stream.test_forks import CONFIG
from tests.s3stream.test_unsettled_commits import LosesACommitThenRefusesTheCheck


def test_a_failed_creation_that_landed_leaves_what_a_restart_keeps(tmp_path: Path) -> None:
    bucket = LocalStore(tmp_path / "objects")
    faulty = LosesACommitThenRefusesTheCheck(bucket)
    config = engine.EngineConfig(store=CONFIG)
    with engine.open(tmp_path / "node", faulty, config) as opened:
        first = opened.store.manifest.state.next_stream_id
        faulty.armed = True
        with pytest.raises(StoreWriteFailed) as refused:
            opened.create_topic("lost", 2)
        assert isinstance(refused.value.__cause__, InjectedFault)
        assert "lost" not in opened.list_topics()
        opened.create_topic("kept", 1)  # its commit settles the lost one: it landed
        running = set(opened.store.manifest.state.streams)
        assert not running & set(range(first, first + 4)), "the failed creation's streams stayed"
    with engine.open(tmp_path / "node", bucket, config) as reopened:
        assert "kept" in reopened.list_topics() and "lost" not in reopened.list_topics()
        assert set(reopened.store.manifest.state.streams) == running
