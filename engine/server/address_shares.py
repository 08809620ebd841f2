"""A bounded set of admissions (password checks, HTTP connections) in
which one client address holds at most a share: a peer flooding from one
address takes its share, and the rest stays for everyone else.

Not thread-safe: a caller on several threads holds its own lock around
``admit`` and ``release``; one on the event loop needs none.
"""

from __future__ import annotations

import enum


class Refusal(enum.Enum):
    """Why an admission was refused."""

    FULL = "every admission is taken"
    ADDRESS_SHARE = "the address has its share"


def default_share(capacity: int) -> int:
    """A quarter of ``capacity``, and at least one, else a capacity of
    fewer than four would let no address in."""
    return max(1, capacity // 4)


class AddressShares:
    """At most ``capacity`` admitted at once, at most ``per_address`` of
    them from one address."""

    def __init__(self, capacity: int, per_address: int) -> None:
        self.capacity = capacity
        self.per_address = per_address
        self.admitted = 0
        """Admissions not released yet."""
        self.by_address: dict[str, int] = {}
        """The admissions of each address that has any (an address leaves
        when its last is released: at most ``admitted`` entries)."""

    def admit(self, address: str) -> Refusal | None:
        """Admits one from ``address``; None, or why it is refused (then
        nothing is counted)."""
        if self.admitted >= self.capacity:
            return Refusal.FULL
        own = self.by_address.get(address, 0)
        if own >= self.per_address:
            return Refusal.ADDRESS_SHARE
        self.admitted += 1
        self.by_address[address] = own + 1
        return None

    def release(self, address: str) -> None:
        """Ends one admission of ``address``."""
        self.admitted -= 1
        left = self.by_address[address] - 1
        if left:
            self.by_address[address] = left
        else:
            del self.by_address[address]
