"""A Produce refused for a partition the engine does not have leaves no
reference cycle behind: the refusal kept for the answer carried its
traceback, whose frames hold the request (its records' buffer) and the
results holding the refusal, so each such request's bytes stayed
allocated until the cyclic collector's next young collection: some 350
requests' worth under ``tidelog serve``'s young threshold of 20,000
(docs/design/0152), hundreds of MiB for a producer of 1 MiB batches to a
topic not created yet."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import engine
import native
from native import RecordSpec
from tests.server.in_process import InProcessServer
from tests.server.wire import produce_answers

UNKNOWN_TOPIC_OR_PARTITION = 3
REQUESTS = 20


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    with (
        engine.open(tmp_path_factory.mktemp("node")) as opened,
        InProcessServer(opened) as server,
    ):
        opened.create_topic("kept", 1)
        yield server


def _produce_frames_in_garbage() -> int:
    """The frames of the Produce handler among what a collection finds
    unreachable now (the collector's own list, kept while counted)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return sum(
            1
            for found in gc.garbage
            if type(found).__name__ == "frame"
            and found.f_code.co_filename.endswith("handlers/produce.py")
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.mark.parametrize(
    ("topic", "partition"), [("kept", 7), ("never-created", 0)], ids=["partition", "topic"]
)
def test_a_refused_partition_leaves_no_cycle_holding_the_request(
    served: InProcessServer, topic: str, partition: int
) -> None:
    batch = native.encode_batch([RecordSpec(0, None, b"v" * 10_000, ())])
    topic_data = [{"name": topic, "partition_data": [{"index": partition, "records": batch}]}]
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(REQUESTS):
            answers = produce_answers(served.bootstrap, topic_data)
            assert answers[(topic, partition)][0] == UNKNOWN_TOPIC_OR_PARTITION
        assert _produce_frames_in_garbage() == 0
    finally:
        if was_enabled:
            gc.enable()
