"""The store's retries wait by one formula (s3stream/transient_retries.py's
backoff_delay): the first wait, doubling up to a bound, never past 5 s."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from s3stream.transient_retries import BACKOFF_MOST_S, backoff_delay


def test_an_opens_waits_double_from_20_ms_to_5_s() -> None:
    assert [backoff_delay(n) for n in range(10)] == [
        0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, BACKOFF_MOST_S, BACKOFF_MOST_S
    ]  # fmt: skip


def test_the_uploaders_waits_double_from_50_ms_to_5_s() -> None:
    waits = [backoff_delay(n, first_s=0.05, doublings=7) for n in range(9)]
    assert waits == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, BACKOFF_MOST_S, BACKOFF_MOST_S]


@given(st.integers(0, 10_000), st.floats(0.001, 1.0), st.integers(0, 20))
def test_a_wait_never_shrinks_and_never_passes_the_bound(
    attempt: int, first_s: float, doublings: int
) -> None:
    wait = backoff_delay(attempt, first_s, doublings)
    assert first_s <= wait <= BACKOFF_MOST_S or wait == BACKOFF_MOST_S
    assert backoff_delay(attempt + 1, first_s, doublings) >= wait
