"""A partition's leader-epoch history, as OffsetForLeaderEpoch reads it:
(epoch, the offset of its first batch) for each epoch that wrote records,
in order. The partition keeps it as it appends; a reader of the stored
batches alone (``tidelog state``) rebuilds it from their headers."""

from __future__ import annotations

from collections.abc import Sequence


def end_offset_for_epoch(
    epochs: Sequence[tuple[int, int]], epoch: int, log_end: int
) -> tuple[int, int]:
    """The largest epoch <= ``epoch`` in ``epochs`` and the end offset of
    that epoch (the start of the next one, or ``log_end``); (-1, -1) if
    every epoch there is later (Kafka's UNDEFINED_EPOCH and offset)."""
    for i in range(len(epochs) - 1, -1, -1):
        if epochs[i][0] <= epoch:
            following = epochs[i + 1][1] if i + 1 < len(epochs) else log_end
            return epochs[i][0], following
    return -1, -1
