"""How a child process of a test ended, in words: a server killed by a
signal is otherwise seen only as its clients' reset connections."""

from __future__ import annotations

import signal


def how_it_ended(returncode: int) -> str:
    """``returncode`` as Popen gives it: a signal by its name, or the code."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "an unknown signal"
        return f"killed by {name} ({-returncode})"
    return f"exited with code {returncode}"
