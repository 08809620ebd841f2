"""The end of a leader epoch and the epoch of an offset, over histories with gaps between epochs,
as Kafka's LeaderEpochFileCache.endOffsetFor answers it; and the history
as a Kafka leader holds it (its own epoch last, cut at the log start)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.leader_epochs import (
    UNDEFINED,
    as_a_leader_holds_it,
    end_offset_for_epoch,
    epoch_for_offset,
)

HISTORY = [(2, 0), (5, 10), (9, 25)]
LOG_END = 40


def test_an_epoch_between_known_ones_is_answered_by_the_one_before() -> None:
    assert end_offset_for_epoch(HISTORY, 3, LOG_END) == (2, 10)
    assert end_offset_for_epoch(HISTORY, 8, LOG_END) == (5, 25)


def test_the_latest_epoch_ends_at_the_log_end() -> None:
    assert end_offset_for_epoch(HISTORY, 9, LOG_END) == (9, LOG_END)


def test_an_epoch_before_the_first_is_answered_with_the_first_start() -> None:
    assert end_offset_for_epoch(HISTORY, 1, LOG_END) == (1, 0)


def test_undefined_later_or_an_empty_history_has_no_answer() -> None:
    assert end_offset_for_epoch(HISTORY, -1, LOG_END) == UNDEFINED
    assert end_offset_for_epoch(HISTORY, 10, LOG_END) == UNDEFINED
    assert end_offset_for_epoch([], 0, LOG_END) == UNDEFINED


def test_a_leader_holds_its_own_epoch_last_at_the_log_end() -> None:
    assert as_a_leader_holds_it(HISTORY, 11, 0, LOG_END)[-1] == (11, LOG_END)
    assert as_a_leader_holds_it(HISTORY, 9, 0, LOG_END) == HISTORY


def test_the_log_start_cuts_the_history_at_the_epoch_holding_it() -> None:
    assert as_a_leader_holds_it(HISTORY, 9, 12, LOG_END) == [(5, 12), (9, 25)]
    assert as_a_leader_holds_it(HISTORY, 9, 10, LOG_END) == [(5, 10), (9, 25)]
    assert as_a_leader_holds_it(HISTORY, 11, LOG_END, LOG_END) == [(11, LOG_END)]


def test_an_offset_belongs_to_the_last_epoch_starting_at_or_before_it() -> None:
    assert [epoch_for_offset(HISTORY, o) for o in (0, 9, 10, 24, 25, 99)] == [2, 2, 5, 5, 9, 9]
    assert epoch_for_offset([(3, 5)], 4) == -1
    assert epoch_for_offset([], 0) == -1


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[tuple[int, int]], int]:
    epochs = sorted(draw(st.sets(st.integers(0, 50), min_size=1, max_size=8)))
    starts = sorted(
        draw(st.lists(st.integers(0, 1000), min_size=len(epochs), max_size=len(epochs)))
    )
    log_end = draw(st.integers(starts[-1], 1100))
    return list(zip(epochs, starts, strict=True)), log_end


@given(histories(), st.integers(-1, 60))
def test_an_answer_is_the_requested_epoch_or_one_before_and_ends_in_the_log(
    history: tuple[list[tuple[int, int]], int], epoch: int
) -> None:
    """Whatever is asked, the answer never names a later epoch than asked,
    and its end offset lies between the first known start and the log end."""
    epochs, log_end = history
    found_epoch, end = end_offset_for_epoch(epochs, epoch, log_end)
    if (found_epoch, end) == UNDEFINED:
        assert epoch < 0 or epoch > epochs[-1][0]
        return
    assert found_epoch <= epoch
    assert epochs[0][1] <= end <= log_end
    later = [start for e, start in epochs if e > epoch]
    assert end == (later[0] if later else log_end)
