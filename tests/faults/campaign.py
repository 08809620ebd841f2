"""What a fault campaign counts, and how it reports: records acknowledged,
lost and duplicated beside the proxy's requests and faults by kind."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tests.faults.s3_proxy import ProxyStats


@dataclass
class Tally:
    """Acknowledged records by (partition, offset) -> value, and what came back."""

    acked: dict[tuple[int, int], bytes] = field(default_factory=dict)

    def ack(self, partition: int, offset: int, value: bytes) -> None:
        assert (partition, offset) not in self.acked, f"offset {partition}:{offset} acked twice"
        self.acked[(partition, offset)] = value

    def check(self, found: list[tuple[int, int, bytes]]) -> tuple[int, int]:
        """(lost, duplicated) of ``found`` (partition, offset, value) against what was acked.

        Lost: an acked record whose offset holds another value or nothing.
        Duplicated: a value found more than once.
        """
        at = {(p, o): v for p, o, v in found}
        lost = sum(1 for key, value in self.acked.items() if at.get(key) != value)
        counts = Counter(v for _, _, v in found)
        duplicated = sum(n - 1 for n in counts.values() if n > 1)
        return lost, duplicated


def report(name: str, stats: ProxyStats, tally: Tally, lost: int, duplicated: int) -> str:
    return (
        f"fault campaign {name}: {stats.summary()}; "
        f"acked={len(tally.acked)} lost={lost} duplicated={duplicated}"
    )
