"""Where a partition's stamp-named headers are the broker's: the governance
history records the offset each provenance change took effect at, exactly,
even when the change comes between a batch's stamping (or schema check)
and its append; the history survives a restart and the catalog's
snapshots, and records a change of the broker's defaults and a fork."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import pytest

import engine
import native
from engine.catalog import SNAPSHOT_EVERY
from engine.engine import Engine
from engine.errors import InvalidRecord
from engine.masking.rules import MASKING_RULES
from engine.partition import Partition
from engine.provenance import PRINCIPAL
from native import RecordSpec
from tests.engine.conftest import EngineFactory
from tests.engine.test_verify import CONFIG, _verify_cli

STAMP = {"tidelog.provenance": "stamp"}
FORGED = (PRINCIPAL, b"User:forged")
RULES = '[{"path": "/email", "action": "redact"}]'


def forged_batch() -> bytes:
    return native.encode_batch([RecordSpec(1, b"k", b"v", headers=(FORGED,))])


def principals(e: engine.Engine, topic: str, offset: int) -> list[bytes]:
    (fetched,) = [e.fetch(topic, 0, offset, 1 << 20)]
    records = [r for b in fetched.records for r in native.decode_records(b, skip_control=True)]
    record = next(r for r in records if r.offset == offset)
    return [value for name, value in record.headers if name == PRINCIPAL]


class _ChangeBeforeAppend:
    """The partition's lock, which changes the topic's configs (turns its
    stamping on) the first time an append takes it: after the append
    decided how to stamp and check its records."""

    def __init__(
        self, e: engine.Engine, partition: Partition, configs: dict[str, str] = STAMP
    ) -> None:
        self.engine, self.lock, self.done = e, partition.lock, False
        self.configs = configs

    def __enter__(self) -> bool:
        if not self.done:
            self.done = True
            self.engine.alter_configs("t", self.configs)
        return self.lock.__enter__()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.lock.__exit__(kind, value, tb)


def test_a_stamping_turned_on_during_an_append_stamps_that_append(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    e.produce("t", 0, forged_batch())
    partition = e.partition("t", 0)
    racing = _ChangeBeforeAppend(e, partition)
    partition.lock = racing  # type: ignore[assignment]
    result = e.produce("t", 0, forged_batch())
    partition.lock = racing.lock
    assert racing.done and result.base_offset == 1
    assert e.stamped_ranges("t", 0) == [(1, None)]
    assert principals(e, "t", 0) == [b"User:forged"]  # outside the range: the client's
    assert principals(e, "t", 1) == [b"User:ANONYMOUS"]  # inside: the broker's only


def test_ranges_follow_each_change_and_survive_a_restart_and_snapshots(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 1, STAMP)
    e.produce("t", 0, forged_batch())
    e.alter_configs("t", {"tidelog.provenance": "none"})
    e.produce("t", 0, forged_batch())
    e.alter_configs("t", STAMP)
    assert e.stamped_ranges("t", 0) == [(0, 1), (2, None)]
    for _ in range(SNAPSHOT_EVERY + 1):  # snapshots and trims the catalog's records
        e.alter_configs("t", {"retention.ms": 1000})
    e.close()
    reopened = engine_factory()
    assert reopened.stamped_ranges("t", 0) == [(0, 1), (2, None)]
    history = reopened.governance_history("t")
    assert [c.action for c in history] == ["create", "alter", "alter"]


def test_verify_says_where_the_stamps_are_the_brokers(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    with Engine.open(data_dir, None, CONFIG) as e:
        e.create_topic("t", 1)
        e.produce("t", 0, forged_batch())
        e.alter_configs("t", STAMP)
        e.produce("t", 0, forged_batch())
        assert e.flush(30)
        (verdict,) = e.verify("t").partitions
        assert verdict.stamped == ((1, None),)
    shown = _verify_cli(data_dir, "file://" + str(data_dir / "objects"), "t")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert (
        "t:0: stamped by the broker in offsets [1, end); "
        "elsewhere stamp-named headers are the writer's own"
    ) in shown.stdout


def test_a_default_removed_between_runs_ends_the_range_it_gave(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory(topic_defaults=STAMP)
    e.create_topic("t", 1)  # stamps by the broker's default only
    e.produce("t", 0, forged_batch())
    assert e.stamped_ranges("t", 0) == [(0, None)]
    e.close()
    reopened = engine_factory()  # the same data, the default gone
    reopened.produce("t", 0, forged_batch())
    assert principals(reopened, "t", 1) == [b"User:forged"]
    assert reopened.stamped_ranges("t", 0) == [(0, 1)]
    change = reopened.governance_history("t")[-1]
    assert (change.action, change.listener, change.offsets) == ("alter", "topic_defaults", [1])
    assert change.after["tidelog.provenance"] == "none"
    reopened.close()
    assert engine_factory().governance_history("t")[-1] == change  # recorded once


def test_a_fork_of_a_governed_topic_is_a_creation_in_the_history(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 1, {**STAMP, MASKING_RULES: RULES})
    e.produce("t", 0, forged_batch())
    e.fork("t", name="copy", configs={MASKING_RULES: ""})  # a copy read in clear
    (created,) = e.governance_history("copy")
    assert (created.action, created.offsets) == ("create", [1])
    assert (created.after[MASKING_RULES], created.after["tidelog.provenance"]) == ("", "stamp")
    # Below the fork point the records are the parent's: the fork's own
    # stamping holds from it on.
    assert e.stamped_ranges("copy", 0) == [(1, None)]


def test_schema_checks_turned_on_during_an_append_check_that_append(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    partition = e.partition("t", 0)
    racing = _ChangeBeforeAppend(e, partition, {"tidelog.value.schema.validation": "id"})
    partition.lock = racing  # type: ignore[assignment]
    with pytest.raises(InvalidRecord):  # a value without a schema id, checked under the lock
        e.produce("t", 0, forged_batch())
    partition.lock = racing.lock
    assert racing.done
    (change,) = e.governance_history("t")[-1:]
    assert change.offsets == [0]
    assert e.partition("t", 0).high_watermark == 0  # nothing unchecked stored from offset 0
