"""The mirror's Kafka clients: confluent-kafka (the ``mirror`` extra),
imported only when a mirror runs, and each side's client settings."""

from __future__ import annotations

from typing import Any

from engine.mirror.errors import MirrorError

REQUEST_TIMEOUT_S = 30.0
"""How long the mirror waits for any one answer from either cluster."""

DELIVERY_TIMEOUT_MS = 15_000
"""How long a record may wait for the target before the mirror starts over
from what the target holds (librdkafka's message.timeout.ms; a target
property given for the mirror overrides it)."""

NEEDS = "mirroring needs confluent-kafka: pip install 'tidelog[mirror]'"


class KafkaMissing(MirrorError):
    """confluent-kafka is not installed."""


def confluent() -> Any:
    """The confluent_kafka module, with its admin part loaded."""
    try:
        import confluent_kafka  # noqa: PLC0415 - an optional extra, loaded on use
        import confluent_kafka.admin  # noqa: PLC0415
    except ImportError as error:
        raise KafkaMissing(NEEDS) from error
    return confluent_kafka


def client_config(bootstrap: str, properties: dict[str, str]) -> dict[str, Any]:
    """A client's settings: the side's own properties over its bootstrap."""
    return {"bootstrap.servers": bootstrap, **properties}


def reader_config(bootstrap: str, properties: dict[str, str], group: str) -> dict[str, Any]:
    """A consumer that reads committed records at offsets it is given and
    never commits nor joins ``group`` (librdkafka wants one named)."""
    return {
        **client_config(bootstrap, properties),
        "group.id": group,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }


def broker_error(error: Any) -> str:
    """A KafkaException's or KafkaError's text."""
    inner = error.args[0] if getattr(error, "args", None) else error
    text = inner.str() if hasattr(inner, "str") else str(inner)
    return str(text)


def delivery_timeout_ms(properties: dict[str, str]) -> float:
    """The target producer's delivery timeout as librdkafka reads it: the
    mirror's DELIVERY_TIMEOUT_MS, overridden by the last of
    message.timeout.ms and its alias delivery.timeout.ms the properties
    set; 0 means no limit."""
    timeout = float(DELIVERY_TIMEOUT_MS)
    for name, value in properties.items():
        if name in ("message.timeout.ms", "delivery.timeout.ms"):
            timeout = float(value)
    return timeout
