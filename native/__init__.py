"""The hot loop's byte-level jobs, behind one API with two implementations.

``native._cnative`` is the C extension built at install time; ``native._pure``
is its pure-Python twin with identical results. The C one is used when it was
built, unless ``TIDELOG_PURE=1`` is set. ``IMPLEMENTATION`` says which is live.
"""

from __future__ import annotations

import os
from types import ModuleType

from native import _pure


def _select() -> tuple[ModuleType, str]:
    if os.environ.get("TIDELOG_PURE", "") not in ("", "0"):
        return _pure, "python"
    try:
        from native import _cnative
    except ImportError:
        return _pure, "python"
    return _cnative, "c"


_impl, IMPLEMENTATION = _select()

crc32c = _impl.crc32c

__all__ = ["IMPLEMENTATION", "crc32c"]
