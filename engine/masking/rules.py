"""The masking rules a topic config holds, ``tidelog.masking.rules``: a
compact JSON list of rules, each naming what it masks (``in``: the value,
the key, or a header by name), where (``path``: a JSON Pointer, RFC 6901,
where a ``*`` token is every element of an array or member of an object)
and how (``action``: redact, hash or drop). Parsed once per distinct text
and checked when set, so a fetch never meets a rule it cannot apply.
"""

from __future__ import annotations

import functools
import json
import re
from typing import NamedTuple

MASKING_RULES = "tidelog.masking.rules"
"""The topic config holding a topic's rules ("" or absent: not masked)."""
MASKING_APPLIES = "tidelog.masking.applies"
"""A read-only entry DescribeConfigs adds to a topic's configs: whether the
asking principal reads the topic masked (docs/governance.md)."""
MASKING_APPLIES_DOC = (
    "read only: true when the principal asking reads this topic masked "
    "(it has masking rules and the principal may not unmask it)"
)

ACTIONS = ("redact", "hash", "drop")
MAX_RULES = 256
"""A topic's rules are applied to every masked record: a bound on the work
one config can ask of each."""
MAX_TOKENS = 64
"""The deepest a path may reach: masking walks it recursively."""
WILDCARD = "*"

_INDEX = re.compile(r"0|[1-9][0-9]*")
_ESCAPE = re.compile(r"~(?![01])")
_RULE_FIELDS = frozenset({"path", "action", "in"})


class MaskRule(NamedTuple):
    target: str
    """``value``, ``key``, or ``header:<name>``."""
    tokens: tuple[str, ...]
    """The pointer's reference tokens, unescaped (() is the whole document)."""
    action: str

    @property
    def header(self) -> str | None:
        """The header name the rule masks, or None for the value or key."""
        return self.target[len("header:") :] if self.target.startswith("header:") else None


class RuleError(ValueError):
    """Why a rules text is refused (the config's INVALID_CONFIG reason)."""


def parse_pointer(pointer: str) -> tuple[str, ...]:
    """A JSON Pointer's reference tokens (RFC 6901): "" is the whole
    document; otherwise "/" before each token, "~1" for "/", "~0" for "~"."""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise RuleError(f"the path {pointer!r} is not a JSON Pointer: it must start with '/'")
    if _ESCAPE.search(pointer):
        raise RuleError(f"the path {pointer!r} has a '~' that is not '~0' or '~1'")
    tokens = pointer[1:].split("/")
    if len(tokens) > MAX_TOKENS:
        raise RuleError(f"the path {pointer[:80]!r}... is {len(tokens)} deep: at most {MAX_TOKENS}")
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in tokens)


def is_index(token: str) -> bool:
    """Whether a token can name an array element (RFC 6901's array-index)."""
    return _INDEX.fullmatch(token) is not None


@functools.lru_cache(maxsize=256)
def parse_rules(text: str) -> tuple[MaskRule, ...]:
    """The rules of a config value, or RuleError saying what is wrong."""
    if not text.strip():
        return ()
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        raise RuleError("not a JSON list of rules") from None
    if not isinstance(raw, list):
        raise RuleError("not a JSON list of rules")
    if len(raw) > MAX_RULES:
        raise RuleError(f"{len(raw)} rules: at most {MAX_RULES}")
    return tuple(_rule(i, item) for i, item in enumerate(raw))


def _rule(index: int, item: object) -> MaskRule:
    where = f"rule {index}"
    if not isinstance(item, dict):
        raise RuleError(f"{where} is not a JSON object")
    unknown = set(item) - _RULE_FIELDS
    if unknown:
        raise RuleError(f"{where} has unknown fields {sorted(unknown)}")
    path, action, target = item.get("path"), item.get("action"), item.get("in", "value")
    if not isinstance(path, str):
        raise RuleError(f"{where} needs a path (a JSON Pointer string)")
    if action not in ACTIONS:
        raise RuleError(f"{where}: action {action!r} is not one of {', '.join(ACTIONS)}")
    if not isinstance(target, str) or not (
        target in ("value", "key") or (target.startswith("header:") and len(target) > 7)
    ):
        raise RuleError(f"{where}: in {target!r} is not value, key or header:<name>")
    return MaskRule(target, parse_pointer(path), action)


def check_rules(text: str) -> str | None:
    """The config check: why the text is refused, or None."""
    try:
        parse_rules(text)
    except RuleError as error:
        return str(error)
    return None
