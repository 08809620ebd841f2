"""The typed columns' per-record shortcuts give what the general path
gives: each kind's converter returns or refuses exactly as _convert does,
and a JSON value decoded from its UTF-8 text is what json.loads makes of
its bytes (the same document, or the same error)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from engine.tables.typed_values import KINDS, TypedField, _convert, _json_text, converter

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.datetimes(timezones=st.just(UTC))
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def _outcome(function: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    try:
        found = function(*args)
    except Exception as error:
        return "error", (type(error), str(error))
    return "ok", (type(found), found)


@given(st.sampled_from(KINDS), values)
@example("long", True)
@example("long", 2**63)
@example("double", False)
@example("double", 10**400)
@example("string", b"x")
@example("int", 2**31)
def test_each_kinds_converter_answers_as_convert(kind: str, value: Any) -> None:
    field = TypedField("c", "p", kind)
    assert _outcome(converter(field), value) == _outcome(_convert, value, field)


@given(st.binary(max_size=12) | st.text(max_size=8).map(lambda t: json.dumps(t).encode("utf-16")))
@example(b'{"a": 1}')
@example(b"\xef\xbb\xbf{}")
@example(b"\xff\xfe{\x00}\x00")
@example(b"1\x00")
@example(b'"\xed\xa0\x80"')
@example(b'"\xff"')
def test_a_values_utf8_text_decodes_as_its_bytes(raw: bytes) -> None:
    assert _outcome(lambda b: json.loads(_json_text(b)), raw) == _outcome(json.loads, raw)


def test_timestamps_still_go_through_the_general_path() -> None:
    field = TypedField("c", "p", "timestamp")
    when = datetime(2026, 1, 1, tzinfo=UTC)
    assert converter(field)(when) is when
