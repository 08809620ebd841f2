"""Loads kio, the library of Kafka's message classes, without hypothesis.

kio registers hypothesis strategies for its types whenever it can import
hypothesis (kio.static._phantom tries at import). hypothesis is a test
tool: in a process that has not imported it already, that import alone
cost a server's start a fifth of a second, where it is installed at all.
Loading kio's phantom-type base first, with hypothesis marked missing in
``sys.modules`` for that one import, has kio behave as where hypothesis is
not installed. A process that imported hypothesis before (a test run)
gets kio's strategies as before; tests that need them whatever the order
register them through each type's ``__hypothesis_hook__``.
"""

from __future__ import annotations

import importlib
import sys

_PHANTOM = "kio.static._phantom"
"""The kio module that imports hypothesis if it can."""


def load_kio_without_hypothesis() -> None:
    """Imports kio's phantom-type base with hypothesis unseen, unless kio
    or hypothesis is imported already (then there is nothing to change)."""
    if _PHANTOM in sys.modules or "hypothesis" in sys.modules:
        return
    sys.modules["hypothesis"] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        importlib.import_module(_PHANTOM)
    finally:
        if sys.modules.get("hypothesis", False) is None:
            del sys.modules["hypothesis"]
