"""A partition's leader-epoch history, as OffsetForLeaderEpoch reads it:
(epoch, the offset of its first batch) for each epoch that wrote records,
in order. The partition keeps it as it appends; a reader of the stored
batches alone (``tidelog state``) rebuilds it from their headers."""

from __future__ import annotations

from collections.abc import Sequence

UNDEFINED = (-1, -1)
"""Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET: no answer."""


def as_a_leader_holds_it(
    epochs: Sequence[tuple[int, int]], current: int, log_start: int, log_end: int
) -> list[tuple[int, int]]:
    """The history as a Kafka leader's LeaderEpochFileCache holds it. A
    leader records its epoch at the log end when it takes over
    (Partition.makeLeader), before it writes anything, so the latest epoch
    is always the current one. A log start moved by retention or
    DeleteRecords cuts the history (truncateFromStart): the epoch holding
    the log start starts there, and earlier ones are gone."""
    history = list(epochs)
    if current >= 0 and (not history or history[-1][0] < current):
        history.append((current, log_end))
    cut = 0
    while cut < len(history) and history[cut][1] <= log_start:
        cut += 1
    if cut:
        history[:cut] = [(history[cut - 1][0], log_start)]
    return history


def end_offset_for_epoch(
    epochs: Sequence[tuple[int, int]], epoch: int, log_end: int
) -> tuple[int, int]:
    """(epoch, end offset) for a requested ``epoch``, as Kafka's
    LeaderEpochFileCache.endOffsetFor answers it:

    - -1 (UNDEFINED_EPOCH), or an epoch later than every one known: UNDEFINED;
    - the latest epoch: it and the log end, where it is still writing;
    - an epoch before the first known: it, and the first known epoch's
      start (what came before was removed from the log);
    - else the largest known epoch <= it, and the start of the next one.
    """
    if epoch < 0 or not epochs or epoch > epochs[-1][0]:
        return UNDEFINED
    if epoch == epochs[-1][0]:
        return epoch, log_end
    for i in range(len(epochs) - 1, -1, -1):
        if epochs[i][0] <= epoch:
            return epochs[i][0], epochs[i + 1][1]
    return epoch, epochs[0][1]


def epoch_for_offset(epochs: Sequence[tuple[int, int]], offset: int) -> int:
    """The epoch that wrote ``offset`` (the last one starting at or before
    it), -1 if none does: Kafka's LeaderEpochFileCache.epochForOffset,
    whose answer ListOffsets gives beside an offset."""
    found = -1
    for epoch, start in epochs:
        if start > offset:
            break
        found = epoch
    return found
