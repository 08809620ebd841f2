"""How an append is made, beside what it appends: what its durability
waits for and how it meets the unuploaded bound. One value is handed
from the caller through the stream store to the appender unchanged (one
of the constants below, or one a caller builds once), so an option is
added here and where it is read, never to every signature on the way."""

from __future__ import annotations

import enum
from typing import NamedTuple


class Pacing(enum.Enum):
    """How an append meets the unuploaded bound (``max_unuploaded_bytes``)."""

    WAIT = "wait"
    """Accepted, then waits for room: back-pressure on its writer."""
    LATER = "later"
    """Accepted without a wait: its writer holds a lock others wait for
    and calls ``wait_for_room`` once it is released (the embedded produce)."""
    NEVER = "never"
    """Never waits (a small record of state, written under a lock the event
    loop takes), and so refused (NoRoom, nothing appended) once the
    unuploaded bytes pass the bound by ``unpaced_headroom_bytes``: what
    nothing paces is still bounded, as Kafka's coordinator is refused by a
    log that cannot take its write."""


class AppendOptions(NamedTuple):
    """An append's options: a field is read where it applies (appender.py),
    set by the callers that need it, and left at its default by the rest."""

    remote: bool = False
    """Durable only once in an object committed to the manifest, not
    once in the WAL alone."""
    pacing: Pacing = Pacing.WAIT


LOCAL = AppendOptions()
REMOTE = AppendOptions(remote=True)
LOCAL_LATER = AppendOptions(pacing=Pacing.LATER)
REMOTE_LATER = AppendOptions(remote=True, pacing=Pacing.LATER)
UNPACED = AppendOptions(pacing=Pacing.NEVER)
"""A record of state written under a lock the event loop takes."""

ByRemote = tuple[AppendOptions, AppendOptions]
"""Options indexed by whether the append waits to be remote (False, True):
picked for each append from constants, never built for one."""
PACED: ByRemote = (LOCAL, REMOTE)
PACED_LATER: ByRemote = (LOCAL_LATER, REMOTE_LATER)
"""For an append made under a lock whose wait for room comes once it is
released (the embedded produce under its partition's lock)."""
