"""Topic ids: the 16-byte UUID a topic is given when it is created (Kafka's
topic id, as the Metadata response carries it), and its text form.

A topic deleted and created again under the same name gets a new id, so
the id, not the name, tells one topic from another of the same name.
"""

from __future__ import annotations

import base64
import binascii

NO_TOPIC_ID = bytes(16)
"""Kafka's zero UUID: no topic id (not known, or not given)."""


def uuid_text(uuid: bytes) -> str:
    """Kafka's text form of a 16-byte UUID (Uuid.toString: URL-safe base64,
    unpadded, 22 characters), as its tools print topic ids; member and
    cluster ids take the same form."""
    return base64.urlsafe_b64encode(uuid).decode().rstrip("=")


def parse_topic_id(text: str) -> bytes:
    """The 16 bytes of a topic id's text form; ValueError unless ``text`` is
    the one text of a non-zero id."""
    try:
        topic_id = base64.urlsafe_b64decode(text + "==")
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"not a topic id: {text!r}") from error
    if len(topic_id) != 16 or topic_id == NO_TOPIC_ID or uuid_text(topic_id) != text:
        raise ValueError(f"not a topic id: {text!r}")
    return topic_id


def from_java_bits(most: int, least: int) -> bytes:
    """A topic id from a Java UUID's two longs (signed, as Kafka clients
    such as confluent-kafka's Uuid give them)."""
    mask = (1 << 64) - 1
    return ((most & mask) << 64 | (least & mask)).to_bytes(16, "big")
