"""Who may change a topic's governance: the configs that decide what a
reader sees in clear (masking), what a writer may append (schemas) and who
the records say wrote them (provenance), and the rule that changing them
takes the cluster's config right, not the topic's (docs/governance.md,
"Who may change governance", docs/design/0047).

Kafka's topic admin right, ALTER_CONFIGS on the topic, is given to the
teams that own a topic so that they can tune retention or compaction. With
it alone, a governance config could be turned off and the topic read in
clear or written unchecked; so a change of one needs ALTER_CONFIGS (or
ALTER) on the CLUSTER resource as well, the right a broker's own configs
and the ACLs already take.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from engine.authorization import (
    CLUSTER_NAME,
    AclOperation,
    Authorizer,
    ClusterAuthorizationFailed,
    ResourceType,
)
from engine.config import PROVENANCE, TopicConfig
from engine.masking.rules import MASKING_RULES

GOVERNANCE_FAMILIES: dict[str, tuple[str, ...]] = {
    "masking": (MASKING_RULES,),
    "key schema": ("tidelog.key.schema.validation", "tidelog.key.schema.subject"),
    "value schema": ("tidelog.value.schema.validation", "tidelog.value.schema.subject"),
    "provenance": (PROVENANCE,),
}
"""The governance configs, by what they govern: a family's configs are
judged together (a schema subject means nothing without its mode)."""

GOVERNANCE_CONFIGS: tuple[str, ...] = tuple(
    name for family in GOVERNANCE_FAMILIES.values() for name in family
)


class Actor(NamedTuple):
    """Who asks for a topic change: recorded with every governance change."""

    principal: str
    listener: str
    may_govern: bool
    """Whether the principal holds ALTER_CONFIGS or ALTER on the cluster."""


OWNER = Actor("User:ANONYMOUS", "embedded", True)
"""The embedded API's caller when no principal is given: the code that
holds the Engine holds its data directory and bucket too (docs/security.md,
"Principals in the embedded API")."""

DEFAULTS_CHANGED = Actor("User:ANONYMOUS", "topic_defaults", True)
"""Who changed a topic's governance by changing the broker's
``[topic_defaults]`` between two runs: the operator of its configuration
file, recorded as the engine opens (TopicAdmin.record_changes_at_open)."""


STAMPING_UNRECORDED = Actor("User:ANONYMOUS", "unrecorded", True)
"""Who turned on the stamping of a topic that the history has no entry of
(created before the history existed): unknown, recorded as the engine
opens (TopicAdmin.record_changes_at_open)."""


class GovernanceChangeRefused(ClusterAuthorizationFailed):
    """A change of a topic's governance configs by a principal without
    ALTER_CONFIGS (or ALTER) on the cluster: answered
    CLUSTER_AUTHORIZATION_FAILED, for the right that is missing."""

    def __init__(self, actor: Actor, topic: str, configs: list[str], action: str) -> None:
        super().__init__(actor.principal, AclOperation.ALTER_CONFIGS)
        self.args = (
            f"{actor.principal} may not {action} governance config(s) "
            f"{', '.join(sorted(configs))} of topic {topic!r}: that needs ALTER_CONFIGS "
            "on the cluster (docs/governance.md, 'Who may change governance')",
        )
        self.topic = topic
        self.configs = configs


def effective(config: TopicConfig) -> dict[str, str]:
    """The topic's governance configs as they hold: override, else default."""
    return {name: config.get(name) for name in GOVERNANCE_CONFIGS}


def changed(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """The governance configs whose value differs between two effective sets."""
    return [name for name in GOVERNANCE_CONFIGS if before.get(name) != after.get(name)]


def set_at_creation(overrides: Mapping[str, str], defaults: TopicConfig) -> list[str]:
    """The governance overrides a CreateTopics gives that weaken what the
    broker's defaults turn on: an override, of a family the defaults set,
    to other than the default's value. A family the defaults leave alone
    may be set freely by whoever may create the topic: it only adds
    governance to what the topic would have had."""
    refused = []
    for family in GOVERNANCE_FAMILIES.values():
        if not any(name in defaults.engine_defaults for name in family):
            continue
        refused += [
            name for name in family if name in overrides and overrides[name] != defaults.get(name)
        ]
    return refused


def check(actor: Actor, topic: str, configs: list[str], action: str) -> None:
    """Raises GovernanceChangeRefused when ``configs`` are changed by an
    actor without the cluster's right."""
    if configs and not actor.may_govern:
        raise GovernanceChangeRefused(actor, topic, configs, action)


def may_govern(authorizer: Authorizer, principal: str, host: str) -> bool:
    """ALTER_CONFIGS or ALTER on the cluster: Kafka's rights over the
    broker's own configs and the ACLs, which governance sits beside."""
    return any(
        authorizer.authorize(principal, operation, ResourceType.CLUSTER, CLUSTER_NAME, host)
        for operation in (AclOperation.ALTER_CONFIGS, AclOperation.ALTER)
    )
