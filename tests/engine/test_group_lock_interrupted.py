"""The group coordinator's lock, taken on the main thread (an embedded
consumer's commit, a group's description) and interrupted twice, once
inside and once as its release starts, is given back whole
(wal/interrupts.py): held, every group request after would wait on it for
good, the heartbeats' timers with them."""

from __future__ import annotations

from pathlib import Path

import engine
from tests.engine.interrupted import interrupted_twice, taken_elsewhere


def test_a_second_ctrl_c_as_the_group_lock_is_released_leaves_it_free(tmp_path: Path) -> None:
    with engine.open(tmp_path) as opened:
        executor = opened.groups._run
        interrupted = interrupted_twice(executor.locked())
        assert taken_elsewhere(executor._lock)
        assert executor._depth == 0
        assert interrupted.landed == ["_GeneratorReleasing.__exit__"]
        assert opened.groups.list_groups() == []  # and the coordinator serves
