"""``tidelog mirror --verify``: a faithful copy is the same; a changed value,
a dropped record, a reordered pair, a record at another offset than the
syncs say, a missing topic or partition is named, by source and target
offset where records diverge.

The model tests run compare_partition over random partitions with gaps and
one random damage; the end-to-end tests verify copies tests/mirror/copier.py
made of a tidelog source on a second tidelog and on librdkafka's mock
cluster, through the CLI hooks as ``tidelog mirror`` calls them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.cli.main import main
from engine.cli.mirror_tools import add_verify_arguments, run_verify
from engine.memory import OffsetVector, Position
from engine.mirror.offset_sync import OffsetTranslation
from engine.mirror.reading import Record
from engine.mirror.verify import (
    CONTENT,
    EXTRA_ON_TARGET,
    MISSING_ON_TARGET,
    NOT_MIRRORED,
    OFFSET,
    compare_partition,
    record_bytes,
)
from engine.testing.brokers import TestBroker
from engine.types import TopicPartition
from tests.mirror.conftest import EVENTS, ORDERS, PARTITIONS, PROFILES, T0, Target, mock_bootstrap
from tests.mirror.copier import Change, copy_topics, dropping, only, swapping, syncs_for, with_value

TP = TopicPartition("t", 0)

# -- the model: compare_partition over records in memory --------------------------------


def _record(offset: int, n: int) -> Record:
    return Record(offset, 0, 1_000 + n, b"k%d" % (n % 3), b"v%d" % n, (("n", b"%d" % n),))


sources = st.lists(st.integers(1, 3), min_size=2, max_size=40).map(
    # Steps between source offsets: 1 for the next offset, more past a gap.
    lambda steps: [_record(sum(steps[:i]), i) for i in range(len(steps))]
)


def _copy(records: list[Record]) -> tuple[list[Record], OffsetTranslation]:
    """The target a faithful mirror writes (dense offsets) and its syncs."""
    copied = [replace(r, offset=i, leader_epoch=3) for i, r in enumerate(records)]
    pairs = [(s.offset, t.offset) for s, t in zip(records, copied, strict=True)]
    return copied, OffsetTranslation(syncs_for(TP, pairs))


FAITHFUL, CHANGED, DROPPED, REORDERED = "faithful", "changed value", "dropped", "reordered"


@given(sources, st.sampled_from([FAITHFUL, CHANGED, DROPPED, REORDERED]), st.data())
def test_the_first_difference_is_named_by_its_source_and_target_offset(
    source: list[Record], damage: str, data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(source) - 2))
    if damage == DROPPED:
        at = data.draw(st.integers(0, len(source) - 1))
        target, translation = _copy(source[:at] + source[at + 1 :])
    else:
        target, translation = _copy(source)
    if damage == CHANGED:
        target[at] = replace(target[at], value=b"changed")
    if damage == REORDERED:
        target[at], target[at + 1] = (
            replace(target[at + 1], offset=at),
            replace(target[at], offset=at + 1),
        )
    verdict = compare_partition(TP, source, target, translation, target_end=len(target))
    assert verdict.offsets_checked
    found = verdict.difference
    if damage == FAITHFUL:
        assert found is None and verdict.same
        assert verdict.source_records == verdict.target_records == len(source)
        assert verdict.source_sha256 == verdict.target_sha256
        return
    assert found is not None and not verdict.same
    assert verdict.source_sha256 != verdict.target_sha256
    assert found.source_offset == source[at].offset
    if damage == DROPPED:
        # The copy's syncs skip the record: named as not mirrored, at the
        # target offset where the next record landed (or the target's end).
        kind = MISSING_ON_TARGET if at == len(source) - 1 else NOT_MIRRORED
        assert (found.kind, found.target_offset) == (kind, at)
        assert verdict.target_records == len(source) - 1
    else:
        # A reordered pair: the same count, another hash, named at its first.
        assert (found.kind, found.target_offset) == (CONTENT, at)
        assert verdict.source_records == verdict.target_records


def test_a_record_at_another_offset_than_the_syncs_say_is_a_difference() -> None:
    # A hand-rolled copy shifted by one (a marker it wrote), the syncs not told.
    source = [_record(i, i) for i in range(5)]
    target, translation = _copy(source)
    shifted = target[:2] + [replace(r, offset=r.offset + 1) for r in target[2:]]
    verdict = compare_partition(TP, source, shifted, translation)
    assert verdict.difference is not None
    assert (verdict.difference.kind, verdict.difference.source_offset) == (OFFSET, 2)
    assert verdict.difference.target_offset == 3
    assert "the offset syncs say at 2" in verdict.difference.describe()
    # Without syncs only the records are compared.
    assert compare_partition(TP, source, shifted).same


def test_records_after_the_sources_last_are_extra() -> None:
    source = [_record(i, i) for i in range(3)]
    target, translation = _copy([*source, _record(3, 3)])
    verdict = compare_partition(TP, source, target, translation)
    assert verdict.difference is not None
    assert (verdict.difference.kind, verdict.difference.target_offset) == (EXTRA_ON_TARGET, 3)


def test_the_content_hash_tells_null_from_empty_and_header_from_value() -> None:
    forms = {
        record_bytes(Record(0, 0, 1, key, value, headers))
        for key, value, headers in [
            (None, b"", ()),
            (b"", None, ()),
            (b"", b"", ()),
            (None, None, (("a", None),)),
            (None, None, (("a", b""),)),
            (None, b"a", ()),
        ]
    }
    assert len(forms) == 6


# -- end to end: the CLI hooks over real clusters ----------------------------------------


def verify(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """``tidelog mirror --verify ARGV``, through the command line's parser."""
    status = main(["mirror", "--verify", *argv])
    return status, capsys.readouterr().out.splitlines()


def test_a_faithful_copy_verifies_the_same_partition_by_partition(
    source: TestBroker, target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--from", source.bootstrap, "--to", target.bootstrap, "--topics", "orders|profiles"]
    status, lines = verify([*flags, "--to-config", "client.id=verify"], capsys)
    assert status == 0, lines
    assert len(lines) == sum(PARTITIONS.values())
    copied = {tp: w for tp, w in target.written.items() if tp.topic in PARTITIONS}
    for line, tp in zip(lines, sorted(copied), strict=True):
        assert line.startswith(f"{tp.topic}:{tp.partition}: same, "), line
        assert "not checked" not in line
    status, lines = verify([*flags, "--json"], capsys)
    (printed,) = lines
    rows = json.loads(printed)
    assert status == 0 and {row["status"] for row in rows} == {"same"}
    counts = {(r["topic"], r["partition"]): r["source_records"] for r in rows}
    assert counts == {(tp.topic, tp.partition): len(w) for tp, w in copied.items()}


DAMAGE: dict[str, tuple[int, Change]] = {
    # Source offsets of orders:2: 0..5 plain, 6..8 committed, 9 its marker,
    # 10..11 aborted, 12 its marker, 13..16 plain, 17..18 committed, 19 marker.
    "changed value": (14, with_value(14, b"tampered")),
    "dropped record": (13, dropping(13)),
    "reordered pair": (7, swapping(7)),
}


@pytest.fixture
def damaged(request: pytest.FixtureRequest, source: TestBroker) -> Iterator[tuple[str, int]]:
    offset, change = DAMAGE[request.param]
    with mock_bootstrap() as bootstrap:
        copy_topics(
            source.bootstrap,
            bootstrap,
            {ORDERS: 4},
            create=False,
            change=only(TopicPartition(ORDERS, 2), change),
        )
        yield bootstrap, offset


@pytest.mark.parametrize("damaged", list(DAMAGE), indirect=True)
def test_a_damaged_copy_names_the_source_and_target_offset_where_it_diverges(
    source: TestBroker, damaged: tuple[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap, offset = damaged
    status, lines = verify(
        ["--from", source.bootstrap, "--to", bootstrap, "--topics", ORDERS], capsys
    )
    assert status == 1
    wrong = [line for line in lines if "DIFFERENT" in line]
    assert len(lines) == 4 and len(wrong) == 1, lines
    # On the target, the copy's offsets trail the source's by what it never
    # sees: the commit marker at 9, the aborted records at 10 and 11 and the
    # abort marker at 12.
    target_offset = offset - len({9, 10, 11, 12} & set(range(offset)))
    assert wrong[0].startswith(f"{ORDERS}:2: DIFFERENT: source offset {offset} "), wrong
    assert f"target offset {target_offset}" in wrong[0] or f"at {target_offset} " in wrong[0]


def test_missing_topics_and_partitions_are_named(
    source: TestBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    with mock_bootstrap() as bootstrap:
        # The mock cluster makes a topic 4 partitions wide: events has 6.
        copy_topics(source.bootstrap, bootstrap, {EVENTS: 4}, create=False)
        flags = ["--from", source.bootstrap, "--to", bootstrap, "--topics", "events|profiles"]
        status, lines = verify(flags, capsys)
    assert status == 1
    assert (
        lines[0]
        == "events: 6 partitions on the source, 4 on the target; missing on the target: 4, 5"
    )
    assert lines[1] == "profiles: missing on the target (4 partitions)"
    assert [line.split(":")[:2] for line in lines[2:]] == [[EVENTS, str(p)] for p in range(4)]
    assert all(", same, " in line.replace(": same,", ", same,") for line in lines[2:])


def test_since_and_until_verify_only_what_the_vectors_cover(
    source: TestBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    tp = TopicPartition(ORDERS, 0)
    with mock_bootstrap() as bootstrap:
        copy_topics(
            source.bootstrap,
            bootstrap,
            {ORDERS: 4},
            create=False,
            change=only(tp, with_value(15, b"x")),
        )
        flags = ["--from", source.bootstrap, "--to", bootstrap, "--topics", ORDERS]
        before = OffsetVector({tp: Position(15)})
        status, lines = verify([*flags, "--until", before.to_text()], capsys)
        assert (status, len(lines)) == (0, 1), lines
        # 0..8 and 13..14: committed records below 15, all the same.
        assert lines[0].startswith(f"{ORDERS}:0: same, 11 records")
        window = OffsetVector({tp: Position(13)})
        status, lines = verify(
            [
                *flags,
                "--since",
                window.to_text(),
                "--until",
                OffsetVector({tp: Position(17)}).to_text(),
            ],
            capsys,
        )
        assert status == 1
        assert lines[0].startswith(f"{ORDERS}:0: DIFFERENT: source offset 15 and target offset 11 ")
        assert "4 records on the source, 4 on the target" in lines[0]


def test_records_the_source_deleted_after_the_copy_are_not_a_difference(
    source: TestBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = "retained"
    source.engine.create_topic(topic, 4)
    with source.engine.producer() as producer:
        for n in range(20):
            producer.send(topic, b"%d" % n, partition=n % 4, timestamp=T0 + n)
        producer.flush(30)
    with mock_bootstrap() as bootstrap:
        copy_topics(source.bootstrap, bootstrap, {topic: 4}, create=False)
        # Retention on the source runs on; the target keeps what it was sent.
        source.engine.delete_records(topic, 0, 3)
        status, lines = verify(
            ["--from", source.bootstrap, "--to", bootstrap, "--topics", topic], capsys
        )
    assert status == 0, lines
    assert lines[0].startswith(f"{topic}:0: same, 2 records")


def test_the_hooks_read_the_flags_a_mirror_parser_already_defines(
    source: TestBroker, mock_target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    # The mirror command defines the connection flags itself, under its own names.
    parser = argparse.ArgumentParser(prog="tidelog mirror")
    parser.add_argument("--from", dest="source_bootstrap", required=True)
    parser.add_argument("--to", dest="target_bootstrap", required=True)
    parser.add_argument("--to-config", dest="target_properties", action="append", default=[])
    parser.add_argument("--topics", dest="topic_pattern")
    parser.add_argument("--verify", action="store_true")
    add_verify_arguments(parser)
    argv = ["--verify", "--from", source.bootstrap, "--to", mock_target.bootstrap]
    args = parser.parse_args([*argv, "--to-config", "client.id=v", "--topics", PROFILES])
    assert run_verify(args) == 0
    lines = capsys.readouterr().out.splitlines()
    # x, y, z, b, a, w of x a y a z b a w: what the cleaner kept.
    assert [line.split(", sha256")[0] for line in lines] == [
        f"{PROFILES}:{p}: same, 6 records" for p in range(4)
    ]
    args = parser.parse_args([*argv, "--to-config", "no-equals-sign"])
    assert run_verify(args) == 2
    assert "--to-config 'no-equals-sign': expected K=V" in capsys.readouterr().err
