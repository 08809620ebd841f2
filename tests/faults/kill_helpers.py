"""Helpers of the kill -9 campaign: where a kill lands, how many cycles a
run makes, and what the campaign found, in figures."""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass

from confluent_kafka import Message

from tests.server.conftest import ServerProcess
from tests.server.test_confluent import Delivery, SteadyProducer


class PacedProducer(SteadyProducer):
    """A SteadyProducer of about a thousand records a second: the campaign's
    time goes to kills and restarts, not to producing and reading back
    hundreds of thousands of records."""

    pause_every = 1


def campaign_size(default: int, full: int) -> int:
    """``default`` cycles, or ``full`` with TIDELOG_FAULTS=full, or the
    number TIDELOG_FAULTS gives."""
    wanted = os.environ.get("TIDELOG_FAULTS", "")
    if wanted == "full":
        return full
    return int(wanted) if wanted.isdigit() else default


def campaign_rng() -> tuple[int, random.Random]:
    """A seeded generator: TIDELOG_FAULTS_SEED replays a run."""
    seed = int(os.environ.get("TIDELOG_FAULTS_SEED") or random.randrange(2**32))
    return seed, random.Random(seed)


def kill_during_start(server: ServerProcess, delay: float) -> bool:
    """Starts the server and SIGKILLs it ``delay`` seconds later, or as soon
    as it is ready if that is sooner: a kill during recovery (WAL replay,
    re-upload, manifest open). True if it was killed before it was ready."""
    try:
        server.start(timeout=delay)
    except RuntimeError as error:
        if "did not start" not in str(error):
            raise  # it exited on its own: a real failure
        return True  # start() killed it at the deadline
    server.kill()
    return False


@dataclass
class CampaignFigures:
    cycles: int
    killed_during_start: int
    acked: int
    lost: int
    misplaced: int
    """Acknowledged records found, but not at the offset their report gave."""
    duplicated: int

    def line(self, name: str, seed: int) -> str:
        return (
            f"kill -9 campaign {name} (seed {seed}): {self.cycles} cycles "
            f"({self.killed_during_start} during start), {self.acked} acknowledged, "
            f"{self.lost} lost, {self.misplaced} at another offset, "
            f"{self.duplicated} duplicated"
        )


def figures(
    cycles: int, killed_during_start: int, deliveries: list[Delivery], log: list[Message]
) -> CampaignFigures:
    """What the log holds against what was acknowledged."""
    at = {(m.partition(), m.offset()): m.value() for m in log}
    found = {m.value() for m in log}
    acked = [d for d in deliveries if d.error is None]
    counts = Counter(m.value() for m in log)
    return CampaignFigures(
        cycles=cycles,
        killed_during_start=killed_during_start,
        acked=len(acked),
        lost=sum(1 for d in acked if d.value not in found),
        misplaced=sum(
            1 for d in acked if d.value in found and at.get((d.partition, d.offset)) != d.value
        ),
        duplicated=sum(n - 1 for n in counts.values() if n > 1),
    )
