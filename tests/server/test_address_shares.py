"""AddressShares, the counter behind the PLAIN password queue's and the
HTTP listeners' per-address shares, against a model: any sequence of
admissions and releases admits one exactly when fewer than ``capacity``
are admitted and fewer than ``per_address`` of them are its address's,
says which bound refused it, and forgets an address with its last."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from engine.server.address_shares import AddressShares, Refusal, default_share

ADDRESSES = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
steps = st.lists(st.tuples(st.booleans(), st.sampled_from(ADDRESSES)), max_size=60)


@given(capacity=st.integers(1, 8), per_address=st.integers(1, 8), steps=steps)
def test_admissions_follow_the_model(
    capacity: int, per_address: int, steps: list[tuple[bool, str]]
) -> None:
    shares = AddressShares(capacity, per_address)
    held: Counter[str] = Counter()
    for admit, address in steps:
        if admit:
            if sum(held.values()) >= capacity:
                expected: Refusal | None = Refusal.FULL
            elif held[address] >= per_address:
                expected = Refusal.ADDRESS_SHARE
            else:
                expected = None
                held[address] += 1
            assert shares.admit(address) is expected
        elif held[address]:
            shares.release(address)
            held[address] -= 1
        assert shares.admitted == sum(held.values())
        assert shares.by_address == {a: n for a, n in held.items() if n}


@given(st.integers(1, 100_000))
def test_the_default_share_is_a_quarter_and_at_least_one(capacity: int) -> None:
    share = default_share(capacity)
    assert share == max(1, capacity // 4)
    assert 1 <= share <= capacity
