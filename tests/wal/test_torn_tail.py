"""A write torn at any byte: recovery keeps exactly the records written whole
before the tear, every acknowledged one among them, and nothing after it.

Records go in as bursts, each acknowledged (fsynced) before the next one is
queued; the last burst stands for the write a kill -9 cut short: its bytes
are kept up to a tear drawn at any byte of it (the ones past the tear hold
what a cut write leaves, zeros, or, as a lost sector can, other bytes).
test_recovery_rule.py's crash images allow recovery to keep any number of
records past the last sync; this property pins the count, so a cut one
record too early (the last good record taken for part of the torn write,
or an unsealed segment's last record dropped) fails it.

TIDELOG_WAL_EXAMPLES sets the examples per property (60 by default).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.wal.conftest import crash_image
from wal import Position, WriteAheadLog
from wal.format import TYPE_SEAL, segment_name
from wal.survey import survey_segment

SEGMENT = 4096
EXAMPLES = int(os.environ.get("TIDELOG_WAL_EXAMPLES", "60"))


def _payload(index: int, rng: random.Random) -> bytes:
    return b"%06d" % index + rng.randbytes(rng.randrange(0, 600))


def _written(directory: Path, bursts: list[int], rng: random.Random) -> list[list[Position]]:
    """Appends each burst at once (so groups of several records form) and
    waits for its acknowledgements; returns every burst's positions. The
    directory's image is taken before the close, as a kill -9 leaves it."""
    positions: list[list[Position]] = []
    written = 0
    with WriteAheadLog(directory / "wal", segment_bytes=SEGMENT) as log:
        for burst in bursts:
            futures = [log.submit(_payload(written + i, rng)) for i in range(burst)]
            written += burst
            positions.append([future.result(timeout=30) for future in futures])
        crash_image(directory / "wal", directory / "crashed")
    return positions


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    bursts=st.lists(st.integers(1, 6), min_size=1, max_size=10),
    tear=st.floats(0, 1),
    torn_bytes=st.sampled_from(["zeros", "other"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_recovery_keeps_exactly_the_records_written_whole_before_a_tear(
    tmp_path_factory: pytest.TempPathFactory,
    bursts: list[int],
    tear: float,
    torn_bytes: str,
    seed: int,
) -> None:
    rng = random.Random(seed)
    work = tmp_path_factory.mktemp("torn")
    positions = _written(work, bursts, rng)
    acknowledged = [p for burst in positions[:-1] for p in burst]
    # The torn write: the last burst's records in the last segment that holds
    # any (a burst that rolled sealed and synced the segments before it).
    last = max(positions[-1])
    path = work / "crashed" / segment_name(last.segment)
    spans = [s for s in survey_segment(str(path), last.segment).spans if s.type != TYPE_SEAL]
    torn = [s for s in spans if Position(last.segment, s.offset) in positions[-1]]
    start, end = torn[0].offset, torn[-1].end
    cut = start + min(int(tear * (end - start + 1)), end - start)
    raw = bytearray(path.read_bytes())
    raw[cut:end] = bytes(end - cut) if torn_bytes == "zeros" else rng.randbytes(end - cut)
    path.write_bytes(raw)

    whole = {Position(last.segment, s.offset) for s in torn if s.end <= cut}
    expected = sorted(
        acknowledged + [p for p in positions[-1] if p.segment < last.segment or p in whole]
    )
    with WriteAheadLog(work / "crashed", segment_bytes=SEGMENT) as log:
        recovered = [entry.position for entry in log.replay()]
        assert recovered[: len(acknowledged)] == sorted(acknowledged), (
            "an acknowledged record was lost"
        )
        assert recovered == expected, "recovery cut the log elsewhere than at the tear"
