"""A topic's masking as the read paths ask for it: the rules its config
holds and the key the catalog keeps, or None for a topic read in clear by
everyone. Parsed once per distinct (rules, key), so asking costs a config
lookup on every fetch of an unmasked topic, nothing per batch."""

from __future__ import annotations

import functools

from engine.config import TopicConfig
from engine.masking.documents import Masking
from engine.masking.rules import MASKING_RULES, parse_rules


def topic_masking(config: TopicConfig, hash_key: bytes | None) -> Masking | None:
    """The topic's masking, None if its config sets no rules."""
    text = config.get(MASKING_RULES)
    if not text:
        return None
    return _masking(text, hash_key)


@functools.lru_cache(maxsize=256)
def _masking(text: str, hash_key: bytes | None) -> Masking | None:
    rules = parse_rules(text)  # checked when set: it parses
    return Masking.of(rules, hash_key) if rules else None
