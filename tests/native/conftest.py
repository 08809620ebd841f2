"""Both implementations of the native API, for tests that hold them to each other."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest
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
needs_c = pytest.mark.skipif(C_IMPL is None, reason="the C extension is not built")


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


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
