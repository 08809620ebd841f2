"""Masking rules (engine/masking/): checked when set, applied to JSON
documents as docs/governance.md says, and the unmask permission's reserved
resource names. The masking function is held to a reference walk over
generated documents and pointers."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.acl_bindings import AclBinding, AclPermission, PatternType
from engine.errors import InvalidConfig
from engine.masking.documents import (
    DROPPED,
    HASH_HEX_DIGITS,
    MARKER_JSON,
    hash_value,
    mask_bytes,
    mask_document,
    redacted,
)
from engine.masking.rules import (
    MAX_RULES,
    MAX_TOKENS,
    MaskRule,
    RuleError,
    parse_pointer,
    parse_rules,
)
from engine.masking.unmask import unmask_binding, unmask_granted

KEY = b"k" * 32

# -- rules, checked when set ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{}", "not a JSON list"),
        ("[1]", "not a JSON object"),
        ('[{"path": "email", "action": "redact"}]', "must start with '/'"),
        ('[{"path": "/a~2b", "action": "redact"}]', "'~0' or '~1'"),
        ('[{"path": "/a", "action": "encrypt"}]', "not one of redact, hash, drop"),
        ('[{"action": "redact"}]', "needs a path"),
        ('[{"path": "/a", "action": "drop", "in": "body"}]', "not value, key or header"),
        ('[{"path": "/a", "action": "drop", "in": "header:"}]', "not value, key or header"),
        ('[{"path": "/a", "action": "drop", "mode": "x"}]', "unknown fields"),
        ("[" + ",".join(['{"path":"","action":"drop"}'] * (MAX_RULES + 1)) + "]", "at most"),
        ('[{"path": "' + "/a" * 65 + '", "action": "drop"}]', "at most 64"),
    ],
)
def test_a_bad_rule_is_refused_with_its_reason(text: str, reason: str) -> None:
    with pytest.raises(RuleError, match=reason):
        parse_rules(text)


def test_rules_parse_to_their_targets_pointers_and_actions() -> None:
    rules = parse_rules(
        '[{"path": "/customer/email", "action": "redact"},'
        ' {"path": "/a~1b/~0c/*", "action": "hash", "in": "key"},'
        ' {"path": "", "action": "drop", "in": "header:trace"}]'
    )
    assert rules == (
        MaskRule("value", ("customer", "email"), "redact"),
        MaskRule("key", ("a/b", "~c", "*"), "hash"),
        MaskRule("header:trace", (), "drop"),
    )
    assert rules[2].header == "trace" and rules[0].header is None


def test_the_engine_refuses_bad_rules_as_invalid_config_and_describes_no_key(
    engine_factory: Any,
) -> None:
    e = engine_factory()
    with pytest.raises(InvalidConfig, match=r"tidelog\.masking\.rules"):
        e.create_topic("t", 1, {"tidelog.masking.rules": '[{"path": "x", "action": "redact"}]'})
    e.create_topic("t", 1)
    with pytest.raises(InvalidConfig):
        e.alter_configs("t", {"tidelog.masking.rules": '[{"path": "/x", "action": "nope"}]'})
    assert e.masking("t") is None and "t" not in e.catalog.state.masking_keys
    e.alter_configs("t", {"tidelog.masking.rules": '[{"path": "/x", "action": "hash"}]'})
    key = e.catalog.state.masking_keys["t"]
    assert len(key) == 32
    described = " ".join(f"{entry.name}={entry.value}" for entry in e.topic_config("t").describe())
    assert key.hex() not in described and "tidelog.masking.rules" in described
    # changing the rules keeps the key: hashes stay the same across rule changes
    e.alter_configs("t", {"tidelog.masking.rules": '[{"path": "/y", "action": "hash"}]'})
    assert e.catalog.state.masking_keys["t"] == key
    e.delete_topic("t")
    assert "t" not in e.catalog.state.masking_keys


# -- what each action does --------------------------------------------------------------


def _rules(text: str) -> tuple[MaskRule, ...]:
    return parse_rules(text)


def test_redact_hash_and_drop_as_the_example_says() -> None:
    rules = _rules(
        '[{"path": "/customer/email", "action": "redact"},'
        ' {"path": "/customer/name", "action": "hash"},'
        ' {"path": "/card", "action": "drop"},'
        ' {"path": "/items/*/sku", "action": "hash"}]'
    )
    value = {
        "customer": {"email": "ann@example.com", "name": "Ann", "age": 41},
        "card": "4111111111111111",
        "items": [{"sku": "A1", "n": 1}, {"sku": "B2", "n": 2}],
    }
    masked = json.loads(mask_bytes(json.dumps(value).encode(), rules, KEY))  # type: ignore[arg-type]
    assert masked == {
        "customer": {"email": "***", "name": hash_value(KEY, "Ann"), "age": 41},
        "items": [{"sku": hash_value(KEY, "A1"), "n": 1}, {"sku": hash_value(KEY, "B2"), "n": 2}],
    }
    assert len(masked["customer"]["name"]) == HASH_HEX_DIGITS


def test_a_hash_is_keyed_stable_and_ignores_member_order_and_spacing() -> None:
    assert hash_value(KEY, {"a": 1, "b": [2]}) == hash_value(KEY, {"b": [2], "a": 1})
    assert hash_value(KEY, "x") == hash_value(KEY, "x")
    assert hash_value(KEY, "x") != hash_value(b"j" * 32, "x")
    assert hash_value(KEY, "1") != hash_value(KEY, 1)  # a type is part of the value


def test_without_a_key_hash_redacts() -> None:
    rules = _rules('[{"path": "/name", "action": "hash"}]')
    assert mask_document({"name": "Ann"}, rules, None) == {"name": "***"}


@pytest.mark.parametrize(
    "raw", [b"plain text", b"\xff\xfe\x00", b'{"unterminated": ', b"[" * 100_000, b"1" * 5000]
)
def test_a_value_that_is_not_json_is_masked_whole(raw: bytes) -> None:
    rules = _rules('[{"path": "/name", "action": "redact"}]')
    assert mask_bytes(raw, rules, KEY) == MARKER_JSON


def test_a_whole_document_rule_says_how_a_value_that_is_not_json_is_masked() -> None:
    assert mask_bytes(b"plain", _rules('[{"path": "", "action": "drop"}]'), KEY) is DROPPED
    hashed = mask_bytes(b"plain", _rules('[{"path": "", "action": "hash"}]'), KEY)
    assert isinstance(hashed, bytes) and b"plain" not in hashed
    assert hashed == mask_bytes(b"plain", _rules('[{"path": "", "action": "hash"}]'), KEY)


def test_a_null_value_stays_null() -> None:
    assert mask_bytes(None, _rules('[{"path": "", "action": "redact"}]'), KEY) is None


# -- the masking function against a reference walk ---------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["a", "b", "*", "~", "/", "a/b", "0", ""]), children, max_size=4
        )
    ),
    max_leaves=25,
)


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


@st.composite
def documents_and_pointers(draw: st.DrawFn) -> tuple[Any, list[str]]:
    """A document and a pointer into it: mostly down existing members and
    elements (sometimes through a ``*``), sometimes to nothing."""
    document = draw(JSON_VALUES)
    node, tokens = document, []
    while draw(st.booleans()):
        if isinstance(node, dict) and node:
            name = draw(st.sampled_from(sorted(node)))
            if draw(st.integers(0, 4)) == 0:
                tokens.append("*")
                node = node[name]
            else:
                tokens.append(name)
                node = node[name]
        elif isinstance(node, list) and node:
            index = draw(st.integers(0, len(node) - 1))
            tokens.append("*" if draw(st.booleans()) else str(index))
            node = node[index]
        else:
            tokens.append(draw(st.sampled_from(["missing", "7", "-", "01"])))
            break
    return document, tokens


def _matches(document: Any, tokens: list[str]) -> list[tuple[Any, ...]]:
    """The concrete paths a pointer names (the reference walk)."""
    found: list[tuple[tuple[Any, ...], Any]] = [((), document)]
    for token in tokens:
        deeper: list[tuple[tuple[Any, ...], Any]] = []
        for path, node in found:
            if isinstance(node, dict):
                names = list(node) if token == "*" else [token] if token in node else []
                deeper += [((*path, n), node[n]) for n in names]
            elif isinstance(node, list):
                if token == "*":
                    indices = list(range(len(node)))
                elif token.isdigit() and str(int(token)) == token and int(token) < len(node):
                    indices = [int(token)]
                else:
                    indices = []
                deeper += [((*path, i), node[i]) for i in indices]
        found = deeper
    return [path for path, _ in found]


def _get(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


def _set(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(document, path[:-1])[path[-1]] = value
    return document


@settings(max_examples=300, deadline=None)
@given(documents_and_pointers(), st.sampled_from(["redact", "hash", "drop"]))
def test_masking_hides_every_named_path_and_changes_nothing_else(
    case: tuple[Any, list[str]], action: str
) -> None:
    document, tokens = case
    pointer = "".join("/" + _escape(t) for t in tokens)
    rules = _rules(json.dumps([{"path": pointer, "action": action}]))
    paths = _matches(document, tokens)
    expected: Any = copy.deepcopy(document)
    if action == "drop":
        if () in paths:
            expected = DROPPED
        else:
            for path in sorted(paths, reverse=True):  # later elements first
                del _get(expected, path[:-1])[path[-1]]
    else:
        for path in paths:
            clear = _get(document, path)
            mask = redacted(clear) if action == "redact" else hash_value(KEY, clear)
            expected = _set(expected, path, mask)
            # no clear value is left where a rule points: what is there
            # depends on the value's type only, or is its keyed hash
            if action == "redact":
                assert mask in ("***", 0, False, [], {}, None)
            else:
                assert isinstance(mask, str) and len(mask) == HASH_HEX_DIGITS
    masked = mask_document(copy.deepcopy(document), rules, KEY)
    assert masked == expected
    # the same, through the bytes a record holds
    out = mask_bytes(json.dumps(document).encode(), rules, KEY)
    if expected is DROPPED:
        assert out is DROPPED
    else:
        assert isinstance(out, bytes) and json.loads(out) == expected


@given(st.text(max_size=20))
def test_pointers_round_trip_through_their_escapes(token: str) -> None:
    assert parse_pointer("/" + _escape(token) + "/x") == (token, "x")


# -- who may unmask ---------------------------------------------------------------------

READ, ALL, WRITE = 3, 2, 4


def _binding(
    name: str,
    principal: str = "User:alice",
    *,
    pattern: int = PatternType.LITERAL,
    operation: int = READ,
    permission: int = AclPermission.ALLOW,
    host: str = "*",
) -> AclBinding:
    return AclBinding(2, name, pattern, principal, host, operation, permission)


def test_unmask_is_read_on_the_reserved_name_literal_or_prefixed() -> None:
    assert unmask_binding("chats", "User:alice") == _binding("tidelog.unmask:chats")
    assert unmask_granted([_binding("tidelog.unmask:chats")], "User:alice", "chats")
    assert unmask_granted([_binding("tidelog.unmask:chats", operation=ALL)], "User:alice", "chats")
    assert unmask_granted([_binding("tidelog.unmask:chats", "User:*")], "User:alice", "chats")
    prefixed = _binding("tidelog.unmask:ch", pattern=PatternType.PREFIXED)
    assert unmask_granted([prefixed], "User:alice", "chats")
    assert not unmask_granted([prefixed], "User:alice", "other")
    every = _binding("tidelog.unmask:", pattern=PatternType.PREFIXED)
    assert unmask_granted([every], "User:alice", "anything")


@pytest.mark.parametrize(
    "bindings",
    [
        [],
        [_binding("chats")],  # READ on the topic itself
        [_binding("*")],  # every topic, but not the reserved names
        [_binding("tidelog.", pattern=PatternType.PREFIXED)],  # shorter than the prefix
        [_binding("tidelog.unmask:chats", "User:bob")],
        [_binding("tidelog.unmask:chats", operation=WRITE)],
        [_binding("tidelog.unmask:chats", host="10.0.0.9")],
        [_binding("tidelog.unmask:chat")],  # a literal names one topic only
        [
            _binding("tidelog.unmask:chats"),
            _binding(
                "tidelog.unmask:", pattern=PatternType.PREFIXED, permission=AclPermission.DENY
            ),
        ],
    ],
)
def test_nothing_else_unmasks(bindings: list[AclBinding]) -> None:
    assert not unmask_granted(bindings, "User:alice", "chats", "127.0.0.1")


# -- the document ---------------------------------------------------------------------------

GOVERNANCE = Path(__file__).resolve().parents[2] / "docs" / "governance.md"


def test_the_documents_example_rules_parse_and_its_numbers_are_the_engines() -> None:
    text = GOVERNANCE.read_text()
    example = re.search(r"```json\n(.*?)```", text, re.DOTALL)
    assert example is not None
    rules = parse_rules(example.group(1))
    assert [r.target for r in rules] == ["value"] * 4 + ["key", "header:authorization"]
    assert rules[3].tokens == ("messages", "*", "text")
    assert f"At most {MAX_TOKENS} tokens" in text and f"At most {MAX_RULES} rules" in text
    assert f"as {HASH_HEX_DIGITS} hex digits" in text
