"""Whether the source masks a topic for the principal reading it.

A tidelog source answers DescribeConfigs of a topic with the read-only
``tidelog.masking.applies`` entry, ``true`` when the asking principal reads
the topic masked (docs/governance.md, "Masked replay"). A copy or a
comparison made by such a principal holds masks, not the data: the mirror
refuses those topics unless masked copies are meant, and ``--verify`` says
which topics it compared masked. A Kafka cluster has no such entry (and no
masking): nothing is masked there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from engine.mirror.errors import ClusterUnavailable

log = logging.getLogger("tidelog.mirror")

MASKING_APPLIES = "tidelog.masking.applies"
"""engine/masking/rules.py's name, repeated: the mirror talks to any
cluster through its client, never through the engine's modules."""


def masked_in(described: Mapping[str, Any]) -> bool:
    """Whether a topic's described configs (name -> entry with ``.value``)
    say the asking principal reads it masked."""
    entry = described.get(MASKING_APPLIES)
    return entry is not None and entry.value == "true"


def masked_topics(kafka: Any, admin: Any, names: list[str], timeout: float) -> list[str]:
    """The topics among ``names`` the source masks for the admin's
    principal; a topic whose configs cannot be described is taken as
    masked (it cannot be shown not to be)."""
    described = describe_topics(kafka, admin, names, timeout)
    return sorted(name for name, entries in described.items() if masked_or_refused(entries))


def describe_topics(
    kafka: Any, admin: Any, names: list[str], timeout: float
) -> dict[str, Mapping[str, Any] | None]:
    """Each topic's described configs (name -> entry), None for a topic
    whose configs the source refused to describe; ClusterUnavailable if
    the source did not answer (not_described)."""
    if not names:
        return {}
    resources = [kafka.admin.ConfigResource("topic", name) for name in names]
    described: dict[str, Mapping[str, Any] | None] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        try:
            described[resource.name] = future.result(timeout)
        except (kafka.KafkaException, TimeoutError) as error:
            not_described(kafka, resource.name, error)
            log.warning("the source refused to describe %s's configs (%s)", resource.name, error)
            described[resource.name] = None
    return described


def masked_or_refused(described: Mapping[str, Any] | None) -> bool:
    """Whether a topic described by describe_topics is taken as masked."""
    return described is None or masked_in(described)


_TRANSIENT = ("_TIMED_OUT", "_TRANSPORT", "_ALL_BROKERS_DOWN", "REQUEST_TIMED_OUT")


def not_described(kafka: Any, name: str, error: BaseException) -> None:
    """A topic whose configs the source did not describe: raises
    ClusterUnavailable when the source did not answer (the mirror's session
    starts over, verify cannot run), since a topic taken as masked stops
    the mirror for good; returns when the source refused (the topic is then
    taken as masked: it cannot be shown not to be)."""
    found = error.args[0] if isinstance(error, kafka.KafkaException) and error.args else None
    transient = found is None or (
        isinstance(found, kafka.KafkaError)
        and (
            found.retriable()
            or any(found.code() == getattr(kafka.KafkaError, c) for c in _TRANSIENT)
        )
    )
    if transient:
        raise ClusterUnavailable(
            f"the source did not describe {name}'s configs: {error}"
        ) from error
