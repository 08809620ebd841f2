"""Both implementations of the native API, for tests that hold them to each other."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from types import ModuleType
from typing import TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st

from native import _pure
from native.records import Compression, RecordSpec


def _load_c() -> ModuleType | None:
    try:
        return importlib.import_module("native._cnative")
    except ImportError:
        return None


C_IMPL = _load_c()
IMPLEMENTATIONS = [pytest.param(_pure, id="python")] + (
    [pytest.param(C_IMPL, id="c")] if C_IMPL is not None else []
)
_F = TypeVar("_F", bound=Callable[..., object])


def needs_c(test: _F) -> _F:
    """A test of the C extension itself (against the twin or a reference),
    skipped when it is not built. It names the C module and the twin, never
    the live native/, so it runs the same in both passes: marked
    ``c_extension``, the pure pass leaves it out (tests/native_twin.py)."""
    skipped = pytest.mark.skipif(C_IMPL is None, reason="the C extension is not built")(test)
    marked: _F = pytest.mark.c_extension(skipped)
    return marked


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


CI_DIFFERENTIAL_EXAMPLES = 100
"""Examples per property for the costly differential properties in
``TIDELOG_HYPOTHESIS=ci`` (tests/run.sh), where every other property runs 500.
Each of their examples builds, checks and decodes whole batches in two or
three implementations. Six bugs planted one at a time in a copy of the C (a
varint read one byte past its end; a varint of the longest length refused;
the int32 mask of a 5-byte varint dropped; the CRC32C seed not inverted, and
not inverted on continuation only; a zigzag value of 64 encoded in one byte)
were each found at 100 examples with every seed tried (3 seeds), as at 500,
so the extra 400 cost the suite minutes and found nothing more.
``thorough`` still runs 2000."""

differential = (
    settings(max_examples=CI_DIFFERENTIAL_EXAMPLES)
    if os.environ.get("TIDELOG_HYPOTHESIS") == "ci"
    else settings()
)
"""The settings of a costly differential property: the profile's, but
CI_DIFFERENTIAL_EXAMPLES examples under the ci profile."""


def c_impl() -> ModuleType:
    assert C_IMPL is not None
    return C_IMPL


maybe_bytes = st.none() | st.binary(max_size=200)
headers = st.lists(
    st.tuples(st.text(max_size=12), st.none() | st.binary(max_size=20)), max_size=4
).map(tuple)
timestamps = st.integers(-(2**40), 2**41)
record_specs = st.builds(RecordSpec, timestamps, maybe_bytes, maybe_bytes, headers)
record_lists = st.lists(record_specs, min_size=1, max_size=20)
codecs = st.sampled_from(list(Compression))
