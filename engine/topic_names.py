"""Which topic names are legal, as Kafka's Topic.validate decides: the one
rule both the topic admin (creating topics) and the wire handlers that
answer for a named topic (DescribeTopicPartitions) apply."""

from __future__ import annotations

import re

_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


def is_legal_topic_name(name: str) -> bool:
    """Kafka's Topic.validate: 1-249 characters of ASCII letters, digits,
    '.', '_' and '-', and not '.' or '..'."""
    return name not in (".", "..") and _TOPIC_NAME.fullmatch(name) is not None
