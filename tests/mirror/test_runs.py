"""The offset syncs a mirror writes (one at the first record of every run)
make every copied record's target offset exact, and a consumer group's
source position translates to the target position of exactly the next
mirrored record (nothing skipped, nothing repeated); progress survives its commit
metadata."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.mirror.checkpoints import Mirrored
from engine.mirror.offset_sync import OffsetTranslation
from engine.mirror.progress import PartitionProgress
from engine.mirror.sync_log import syncs_for, translation_of
from engine.types import TopicPartition

TP = TopicPartition("t", 0)

# Per source offset: copied (True) or a gap the target never sees (a marker,
# an aborted or deleted record); per copied record, how many offsets the
# target spends before it (markers of its own).
_layouts = st.lists(
    st.tuples(st.booleans(), st.integers(min_value=0, max_value=2)), min_size=1, max_size=80
)


def _copy(layout: list[tuple[bool, int]], split: int) -> tuple[list[tuple[int, int]], int]:
    pairs = []
    target = 0
    for source_offset, (copied, target_gap) in enumerate(layout):
        if copied:
            target += target_gap
            pairs.append((source_offset, target))
            target += 1
    return pairs, min(split, len(pairs))


@given(_layouts, st.integers(min_value=0, max_value=80))
def test_syncs_translate_every_copied_record_exactly(
    layout: list[tuple[bool, int]], split: int
) -> None:
    pairs, split = _copy(layout, split)
    # Written in two cycles (or a crash and the tail read back between).
    first, delta = syncs_for(TP, None, pairs[:split])
    second, _ = syncs_for(TP, delta, pairs[split:])
    translation = translation_of(first + second)
    for source_offset, target_offset in pairs:
        assert translation.translate(source_offset) == target_offset
    runs = sum(
        1 for n, (s, t) in enumerate(pairs) if n == 0 or t - s != pairs[n - 1][1] - pairs[n - 1][0]
    )
    assert len(first) + len(second) == runs


@given(_layouts, st.integers(min_value=0, max_value=90))
def test_a_group_position_translates_to_the_next_mirrored_record(
    layout: list[tuple[bool, int]], position: int
) -> None:
    pairs, _ = _copy(layout, 0)
    syncs, _ = syncs_for(TP, None, pairs)
    end = len(layout)
    target_next = pairs[-1][1] + 1 if pairs else 0
    progress = PartitionProgress(end, pairs[-1][0] if pairs else -1, target_next)
    mirrored = Mirrored(progress, translation_of(syncs), syncs[0].target_offset if syncs else None)
    translated = mirrored.target_position(position)
    if position > end:
        assert translated is None  # not copied that far yet
        return
    # Nothing skipped, nothing repeated: the first mirrored record at or past
    # the translated position is the source's next one (offsets between may
    # be the target's own markers, which a consumer passes over).
    assert translated is not None
    following = [t for s, t in pairs if s >= position]
    before = [t for s, t in pairs if s < position]
    assert (
        (before[-1] if before else -1) < translated <= (following[0] if following else target_next)
    )
    if not following:
        assert translated == target_next


@given(st.integers(0, 2**62), st.integers(-1, 2**62), st.integers(0, 2**62))
def test_progress_survives_its_commit_metadata(position: int, last: int, target: int) -> None:
    progress = PartitionProgress(position, last, target)
    assert PartitionProgress.parse(position, progress.metadata()) == progress


def test_a_commit_that_is_not_the_mirrors_is_no_progress() -> None:
    assert PartitionProgress.parse(5, "") is None
    assert PartitionProgress.parse(5, None) is None
    assert PartitionProgress.parse(-1, "v0 last=1 target=2") is None


def test_an_empty_translation_knows_nothing() -> None:
    assert OffsetTranslation().translate(0) is None
