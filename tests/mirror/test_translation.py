"""Record references and offset vectors recorded against a tidelog source
point at the same records on the cluster it was mirrored to.

The model test drives OffsetTranslation and engine.memory.translate over
random runs of gaps (source markers, aborted and compacted records, markers
of the target's own); the end-to-end tests mirror a real source (tidelog
with transactions, DeleteRecords and a cleaned compacted topic) to a second
tidelog and to librdkafka's mock cluster with tests/mirror/copier.py, and
check every record's reference and replayed vectors there.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaTP
from hypothesis import given
from hypothesis import strategies as st

from engine.cli.main import main
from engine.memory import (
    BelowFirstSync,
    NoOffsetSyncs,
    NotMirrored,
    OffsetVector,
    Position,
    RecordRef,
    translate_offset,
    translate_position,
    translate_vector,
)
from engine.memory.translate import ABORTED, ABSENT_ON_SOURCE, GAP, NOT_YET
from engine.mirror.offset_sync import (
    OFFSET_SYNCS_TOPIC,
    InvalidOffsetSync,
    OffsetSync,
    OffsetTranslation,
)
from engine.mirror.reading import Cluster
from engine.mirror.translation import Translator, load_translations
from engine.testing.brokers import TestBroker
from engine.types import ConsumerRecord, TopicPartition
from tests.mirror.conftest import ORDERS, PARTITIONS, PROFILES, Target, mock_bootstrap
from tests.mirror.copier import Copied, syncs_for
from tests.server.conftest import quiet_librdkafka

TP = TopicPartition("t", 0)

# -- the model: OffsetTranslation and engine.memory.translate without a cluster ----------

RECORD, SOURCE_GAP, TARGET_MARKER = "record", "source-gap", "target-marker"
"""A mirrored record; a source offset the target never sees (a transaction
marker, an aborted record, a record compacted away); a target offset of
the target's own (a marker the mirror's transactions leave)."""

logs = st.lists(
    st.sampled_from([RECORD, RECORD, RECORD, SOURCE_GAP, TARGET_MARKER]), min_size=1, max_size=60
)


class Mirrored:
    """Both sides of a mirrored partition, built from a list of entries."""

    def __init__(self, entries: list[str], source_start: int) -> None:
        self.pairs: list[tuple[int, int]] = []
        self.source_gaps: set[int] = set()
        self.target_markers: set[int] = set()
        source, target = source_start, 0
        for entry in entries:
            if entry == RECORD:
                self.pairs.append((source, target))
            if entry == SOURCE_GAP:
                self.source_gaps.add(source)
            if entry == TARGET_MARKER:
                self.target_markers.add(target)
            source += entry != TARGET_MARKER
            target += entry != SOURCE_GAP
        self.source_end, self.target_end = source, target
        self.translations = {TP: OffsetTranslation(syncs_for(TP, self.pairs))}

    def lowest_target_position(self, position: int) -> int:
        """Past the copies of every mirrored record below ``position``."""
        below = [t for s, t in self.pairs if s < position]
        return below[-1] + 1 if below else 0

    def highest_target_position(self, position: int) -> int:
        """At or below the copy of the first mirrored record at ``position`` or after."""
        after = [t for s, t in self.pairs if s >= position]
        return after[0] if after else self.target_end


@given(logs, st.integers(0, 5), st.data())
def test_records_translate_exactly_gaps_are_told_and_positions_skip_nothing(
    entries: list[str], start: int, data: st.DataObject
) -> None:
    side = Mirrored(entries, start)
    end = side.target_end
    # Syncs read in any order, some twice (a mirror that restarted), give
    # the same translation.
    syncs = syncs_for(TP, side.pairs)
    again = OffsetTranslation(data.draw(st.permutations(syncs + syncs[: len(syncs) // 2])))
    assert [again.translate(o) for o in range(side.source_end + 1)] == [
        side.translations[TP].translate(o) for o in range(side.source_end + 1)
    ]
    # Every mirrored record: exactly its copy's offset.
    for source, target in side.pairs:
        assert translate_offset(TP, source, side.translations, end) == target
    # A source offset that was not mirrored never lands on a mirrored record:
    # the syncs show the gap, or it lands on a marker of the target's own
    # (which reading the target tells: Translator.ref).
    mirrored_targets = {t for _, t in side.pairs}
    first = side.pairs[0][0] if side.pairs else None
    for offset in sorted(side.source_gaps):
        if first is None:
            with pytest.raises(NoOffsetSyncs):
                translate_offset(TP, offset, side.translations, end)
        elif offset < first:
            with pytest.raises(BelowFirstSync):
                translate_offset(TP, offset, side.translations, end)
        else:
            try:
                found = translate_offset(TP, offset, side.translations, end)
            except NotMirrored as error:
                assert error.reason in (GAP, NOT_YET)
            else:
                assert found in side.target_markers and found not in mirrored_targets
    # A position: the copies below it are exactly the mirrored records below
    # the source position (nothing skipped, nothing repeated).
    if first is None:
        return
    for position in range(first, side.source_end + 1):
        found_at = translate_position(TP, Position(position, 7), side.translations, end)
        assert found_at.leader_epoch == -1
        low = side.lowest_target_position(position)
        assert low <= found_at.offset <= side.highest_target_position(position), position


def test_past_a_trailing_gap_a_position_stops_at_the_targets_end() -> None:
    # Records 0..4 mirrored, 5 and 6 a transaction marker and an aborted
    # record: the syncs alone put position 7 at 7, two past the target's
    # end, where a reader would skip the next two records mirrored.
    side = Mirrored([RECORD] * 5 + [SOURCE_GAP] * 2, 0)
    assert side.translations[TP].translate(7) == 7
    assert translate_position(TP, Position(7), side.translations, side.target_end).offset == 5
    with pytest.raises(NotMirrored) as raised:
        translate_offset(TP, 6, side.translations, side.target_end)
    assert raised.value.reason == NOT_YET


def test_a_vector_is_translated_position_by_position() -> None:
    other = TopicPartition("u", 2)
    translations = {
        TP: OffsetTranslation([OffsetSync(TP, 0, 0), OffsetSync(TP, 5, 3)]),
        other: OffsetTranslation([OffsetSync(other, 10, 0)]),
    }
    vector = OffsetVector({TP: Position(6, 4), other: Position(12, 1)})
    translated = translate_vector(vector, translations)
    assert translated == OffsetVector({TP: Position(4), other: Position(2)})
    with pytest.raises(NoOffsetSyncs):
        translate_vector(OffsetVector({TopicPartition("v", 0): Position(1)}), translations)
    with pytest.raises(BelowFirstSync):
        translate_vector(OffsetVector({other: Position(9)}), translations)


# -- end to end: a tidelog source mirrored to a second tidelog and to the mock cluster --


def target_epoch(bootstrap: str, tp: TopicPartition, offset: int) -> int:
    """The leader epoch the target reports for its record at ``offset``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex}",
            **quiet_librdkafka(),
        }
    )
    try:
        consumer.assign([KafkaTP(tp.topic, tp.partition, offset)])
        message = consumer.poll(30)
        assert message is not None and message.error() is None and message.offset() == offset
        epoch: int = message.leader_epoch()
        return epoch
    finally:
        consumer.close()


def content(record: ConsumerRecord | Copied) -> tuple[object, ...]:
    return (record.key, record.value, tuple(record.headers), record.timestamp)


def source_records(
    source: TestBroker, tp: TopicPartition, isolation_level: str
) -> list[ConsumerRecord]:
    """The source partition's records below its end, through engine.memory's replay."""
    engine = source.engine
    log_start, end = engine.offsets(tp.topic, tp.partition)
    until = OffsetVector({tp: Position(end)})
    since = OffsetVector({tp: Position(log_start)})
    with engine.replay(until, since, isolation_level=isolation_level) as replay:
        return list(replay)


def partitions() -> Iterator[TopicPartition]:
    for topic, count in PARTITIONS.items():
        for partition in range(count):
            yield TopicPartition(topic, partition)


def test_every_source_record_translates_to_the_target_offset_holding_it(
    source: TestBroker, target: Target
) -> None:
    translations = load_translations(Cluster(target.bootstrap), list(PARTITIONS))
    assert set(translations) == set(partitions())
    for tp in partitions():
        on_target = target.records[tp]
        committed = source_records(source, tp, "read_committed")
        assert len(on_target) == len(committed) > 0
        for record in committed:
            ref = RecordRef(tp.topic, tp.partition, record.offset, 0)
            moved = translate_offset(tp, ref.offset, translations, max(on_target) + 1)
            assert content(on_target[moved]) == content(record), (tp, record.offset, moved)
        # The copy holds every committed record, in order.
        assert [offset for offset, _ in target.written[tp]] == [r.offset for r in committed]
    # Every partition's offsets moved (markers, aborted records, deletions,
    # compaction): a reference kept as it was would point at another record.
    shifted = [tp for tp in partitions() if any(s != t for s, t in target.written[tp])]
    assert len(shifted) == len(list(partitions()))


def test_a_reference_gets_the_targets_leader_epoch_and_a_reason_when_not_mirrored(
    source: TestBroker, target: Target
) -> None:
    orders0, profiles2 = (
        TopicPartition(ORDERS, 0),
        TopicPartition(PROFILES, 2),
    )
    all_records = source_records(source, orders0, "read_uncommitted")
    committed = {r.offset for r in source_records(source, orders0, "read_committed")}
    aborted = next(r.offset for r in all_records if r.offset not in committed)
    marker = next(o for o in range(max(committed)) if o not in {r.offset for r in all_records})
    last = max(committed)
    kept = {r.offset for r in source_records(source, profiles2, "read_committed")}
    cluster, origin = Cluster(target.bootstrap), Cluster(source.bootstrap)
    with Translator(cluster, source=origin, topics=[ORDERS, PROFILES]) as translator:
        moved = translator.ref(RecordRef(ORDERS, 0, last, 0))
        expected = dict(target.written[orders0])[last]
        assert moved.offset == expected
        assert moved.leader_epoch == target_epoch(target.bootstrap, orders0, expected) >= 0
        for offset, reason in ((aborted, ABORTED), (marker, ABSENT_ON_SOURCE)):
            with pytest.raises(NotMirrored) as raised:
                translator.ref(RecordRef(ORDERS, 0, offset, 0))
            assert raised.value.reason == reason, offset
        with pytest.raises(BelowFirstSync):
            translator.ref(RecordRef(ORDERS, 1, 2, 0))  # deleted before it was mirrored
        assert 1 not in kept and 0 in kept
        with pytest.raises(NotMirrored) as raised:
            translator.ref(RecordRef(PROFILES, 2, 1, 0))  # compacted away
        assert raised.value.reason == ABSENT_ON_SOURCE
    with Translator(cluster, topics=[ORDERS]) as translator:
        with pytest.raises(NotMirrored) as raised:
            translator.ref(RecordRef(ORDERS, 0, aborted, 0))
        assert raised.value.reason == GAP
        with pytest.raises(NoOffsetSyncs):
            translator.ref(RecordRef(PROFILES, 0, 5, 0))  # not loaded: not asked for


def test_a_translated_vector_replays_on_the_target_what_it_replays_on_the_source(
    source: TestBroker, target: Target
) -> None:
    engine = source.engine
    tps = list(partitions())
    ends = {tp: engine.offsets(tp.topic, tp.partition)[1] for tp in tps}
    starts = {tp: target.written[tp][0][0] for tp in tps}
    rng = random.Random(7)
    vectors = [OffsetVector({tp: Position(ends[tp]) for tp in tps})]  # a trailing marker each
    vectors += [
        OffsetVector({tp: Position(rng.randint(starts[tp], ends[tp])) for tp in tps})
        for _ in range(6)
    ]
    with Translator(Cluster(target.bootstrap), topics=list(PARTITIONS)) as translator:
        for vector in vectors:
            translated = translator.vector(vector)
            since = OffsetVector(
                {tp: Position(engine.offsets(tp.topic, tp.partition)[0]) for tp in tps}
            )
            with engine.replay(vector, since) as replay:
                replayed = list(replay)
            for tp in tps:
                below_source = [content(r) for r in replayed if (r.topic, r.partition) == tp]
                below_target = [
                    content(record)
                    for offset, record in sorted(target.records[tp].items())
                    if offset < translated[tp].offset
                ]
                assert below_target == below_source, (tp, vector[tp], translated[tp])


def _translate_cli(argv: list[str]) -> int:
    """``tidelog mirror ARGV`` (``translate ...``), through the command line's parser."""
    return main(["mirror", *argv])


def test_the_translate_command_prints_the_translated_ref_and_vector(
    source: TestBroker, mock_target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    tp = TopicPartition(ORDERS, 0)
    source_offset, target_offset = mock_target.written[tp][-1]
    assert (
        _translate_cli(
            ["translate", f"{ORDERS}:0:{source_offset}:0", "--to", mock_target.bootstrap]
        )
        == 0
    )
    printed = RecordRef.parse(capsys.readouterr().out.strip())
    assert (printed.topic, printed.partition, printed.offset) == (ORDERS, 0, target_offset)
    vector = OffsetVector({tp: Position(source_offset + 1, 0)})
    assert _translate_cli(["translate", vector.to_text(), "--to", mock_target.bootstrap]) == 0
    assert OffsetVector.from_text(capsys.readouterr().out) == OffsetVector(
        {tp: Position(target_offset + 1)}
    )
    committed = {o for o, _ in mock_target.written[tp]}
    aborted = next(
        r.offset
        for r in source_records(source, tp, "read_uncommitted")
        if r.offset not in committed
    )
    argv = ["translate", f"{ORDERS}:0:{aborted}:0", "--to", mock_target.bootstrap]
    assert (
        _translate_cli([*argv, "--from", source.bootstrap, "--from-config", "client.id=check"]) == 1
    )
    assert "aborted transaction" in capsys.readouterr().err
    assert _translate_cli(["translate", "orders:zero", "--to", mock_target.bootstrap]) == 2
    assert "record reference" in capsys.readouterr().err


def test_a_sync_that_does_not_parse_is_refused_by_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with mock_bootstrap() as bootstrap:
        producer = Producer({"bootstrap.servers": bootstrap, **quiet_librdkafka()})
        producer.produce(OFFSET_SYNCS_TOPIC, b"not a sync", b"orders\0\0\0\0\0", partition=0)
        assert producer.flush(30) == 0
        with pytest.raises(InvalidOffsetSync):
            load_translations(Cluster(bootstrap))
        assert _translate_cli(["translate", "orders:0:1:0", "--to", bootstrap]) == 2
    assert "offset sync of 11+10 bytes" in capsys.readouterr().err
