"""Masking one record: its value, key and headers, each a JSON document the
rules walk, masked in place and written back compactly.

What a rule does at its path: ``redact`` puts a fixed marker of the same
JSON type (``"***"``, ``0``, ``false``, ``[]``, ``{}``, ``null``); ``hash``
puts the HMAC-SHA-256 of the value's canonical JSON under the topic's key,
as 32 hex digits, so equal values hash equal (joins still work) and nobody
without the key can test guesses; ``drop`` removes the member or element.
A document that is not JSON (or too deep or too large to parse) is masked
whole: by the first rule whose path is "" if there is one (hashing or
dropping the raw bytes), else replaced by the marker. Fail closed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from engine.masking.rules import WILDCARD, MaskRule, is_index
from native import Record, RecordSpec

MARKER = "***"
MARKER_JSON = b'"***"'
"""What a masked value that is not JSON becomes: the marker as a JSON string,
so a consumer's JSON deserializer still reads it."""
HASH_HEX_DIGITS = 32


class _Dropped:
    """What a dropped whole document becomes: a null value or key, no header."""


DROPPED = _Dropped()


class Masking(NamedTuple):
    """A topic's rules by what they mask, and its hashing key (None when the
    catalog has none: then ``hash`` redacts, since it cannot hash safely)."""

    value: tuple[MaskRule, ...]
    key: tuple[MaskRule, ...]
    headers: dict[str, tuple[MaskRule, ...]]
    hash_key: bytes | None

    @classmethod
    def of(cls, rules: Sequence[MaskRule], hash_key: bytes | None) -> Masking:
        headers: dict[str, tuple[MaskRule, ...]] = {}
        for rule in rules:
            name = rule.header
            if name is not None:
                headers[name] = (*headers.get(name, ()), rule)
        return cls(
            tuple(r for r in rules if r.target == "value"),
            tuple(r for r in rules if r.target == "key"),
            headers,
            hash_key,
        )

    def record(self, record: Record) -> RecordSpec:
        """The record with everything the rules name masked."""
        key = mask_bytes(record.key, self.key, self.hash_key) if self.key else record.key
        value = mask_bytes(record.value, self.value, self.hash_key) if self.value else record.value
        headers = record.headers
        if self.headers and headers:
            masked_headers: list[tuple[str, bytes | None]] = []
            for name, raw in headers:
                rules = self.headers.get(name)
                masked = raw if rules is None else mask_bytes(raw, rules, self.hash_key)
                if not isinstance(masked, _Dropped):
                    masked_headers.append((name, masked))
            headers = tuple(masked_headers)
        return RecordSpec(
            record.timestamp,
            None if isinstance(key, _Dropped) else key,
            None if isinstance(value, _Dropped) else value,
            headers,
        )


def mask_bytes(
    raw: bytes | None, rules: Sequence[MaskRule], hash_key: bytes | None
) -> bytes | _Dropped | None:
    """One value, key or header masked by ``rules``; None (Kafka's null)
    stays None: there is nothing in it to hide."""
    if raw is None:
        return None
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or too deep
        return _whole_raw(raw, rules, hash_key)
    masked = mask_document(document, rules, hash_key)
    if isinstance(masked, _Dropped):
        return masked
    try:
        return json.dumps(masked, separators=(",", ":"), ensure_ascii=True).encode()
    except (ValueError, RecursionError):
        return MARKER_JSON


def _whole_raw(raw: bytes, rules: Sequence[MaskRule], hash_key: bytes | None) -> bytes | _Dropped:
    for rule in rules:
        if rule.tokens:
            continue
        if rule.action == "drop":
            return DROPPED
        if rule.action == "hash" and hash_key is not None:
            return json.dumps(_digest(hash_key, bytes(raw))).encode()
        break
    return MARKER_JSON


def mask_document(document: Any, rules: Sequence[MaskRule], hash_key: bytes | None) -> Any:
    """The parsed document with each rule applied in order (changed in
    place where it can be); DROPPED if a rule drops it whole."""
    for rule in rules:
        document = _apply(document, rule.tokens, rule.action, hash_key)
        if document is DROPPED:
            return DROPPED
    return document


def _apply(node: Any, tokens: tuple[str, ...], action: str, hash_key: bytes | None) -> Any:
    if not tokens:
        if action == "drop":
            return DROPPED
        if action == "hash" and hash_key is not None:
            return hash_value(hash_key, node)
        return redacted(node)
    token, rest = tokens[0], tokens[1:]
    if isinstance(node, dict):
        names = list(node) if token == WILDCARD else [token] if token in node else []
        for name in names:
            masked = _apply(node[name], rest, action, hash_key)
            if masked is DROPPED:
                del node[name]
            else:
                node[name] = masked
    elif isinstance(node, list):
        if token == WILDCARD:
            indices: Sequence[int] = range(len(node))
        elif is_index(token) and int(token) < len(node):
            indices = [int(token)]
        else:
            indices = []
        for index in reversed(indices):  # from the end: a drop shifts what follows it
            masked = _apply(node[index], rest, action, hash_key)
            if masked is DROPPED:
                del node[index]
            else:
                node[index] = masked
    return node


def redacted(value: Any) -> Any:
    """The marker of the value's JSON type."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return 0
    if isinstance(value, str):
        return MARKER
    if isinstance(value, list):
        return []
    if isinstance(value, dict):
        return {}
    return None


def hash_value(hash_key: bytes, value: Any) -> str:
    """The keyed hash of a JSON value: of its canonical form, so the same
    value hashes the same whatever the spacing or member order it came in."""
    canonical = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=True)
    return _digest(hash_key, canonical.encode())


def _digest(hash_key: bytes, data: bytes) -> str:
    return hmac.new(hash_key, data, hashlib.sha256).hexdigest()[:HASH_HEX_DIGITS]
