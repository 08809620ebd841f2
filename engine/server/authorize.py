"""The authorization each API asks before it acts, as Kafka's KafkaApis
asks it (AuthHelper.authorize): small questions a handler asks in one call,
answered from the server's authorizer and the request's identity.

With no authorizer configured (AllowAll) every answer is yes without
looking further, so the produce and fetch paths pay one type check.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.acl_authorizer import AclAuthorizer
from engine.authorization import (
    CLUSTER_NAME,
    AclOperation,
    AllowAll,
    ResourceType,
    TopicAuthorizationFailed,
)
from engine.governance_gate import Actor, may_govern
from engine.protocol.kafka_code import KafkaCode
from engine.server.context import RequestContext

TOPIC = ResourceType.TOPIC
GROUP = ResourceType.GROUP
CLUSTER = ResourceType.CLUSTER
TRANSACTIONAL_ID = ResourceType.TRANSACTIONAL_ID


def allowed(
    context: RequestContext, operation: AclOperation, resource_type: ResourceType, name: str
) -> bool:
    """Whether the request's principal may perform ``operation`` on the resource."""
    authorizer = context.server.authorizer
    if type(authorizer) is AllowAll:
        return True
    identity = context.identity
    return authorizer.authorize(identity.principal, operation, resource_type, name, identity.host)


def allowed_on_cluster(context: RequestContext, operation: AclOperation) -> bool:
    return allowed(context, operation, CLUSTER, CLUSTER_NAME)


def refused_topics(
    context: RequestContext, operation: AclOperation, names: Iterable[str]
) -> set[str]:
    """The topics among ``names`` the principal may not ``operation``
    (each asked once, however often it is named)."""
    if type(context.server.authorizer) is AllowAll:
        return set()
    return {n for n in set(names) if not allowed(context, operation, TOPIC, n)}


def refused_groups(
    context: RequestContext, operation: AclOperation, names: Iterable[str]
) -> set[str]:
    """The groups among ``names`` the principal may not ``operation``."""
    if type(context.server.authorizer) is AllowAll:
        return set()
    return {n for n in set(names) if not allowed(context, operation, GROUP, n)}


def may_create_topic(context: RequestContext, name: str) -> bool:
    """CREATE on the cluster, or on the topic (Kafka's CreateTopics and
    auto-creation)."""
    return allowed_on_cluster(context, AclOperation.CREATE) or allowed(
        context, AclOperation.CREATE, TOPIC, name
    )


def check_create_topic(context: RequestContext, name: str) -> None:
    """may_create_topic as the engine's CreateCheck: an append whose topic
    was deleted after the request looked it up recreates it only if the
    principal may create it (TopicAuthorizationFailed otherwise, the answer
    the request's own auto-creation gives)."""
    if not may_create_topic(context, name):
        raise TopicAuthorizationFailed(context.identity.principal, AclOperation.CREATE, name)


def actor(context: RequestContext) -> Actor:
    """The request's principal as a topic change records it, with whether
    it may change governance configs (engine/governance_gate.py)."""
    identity = context.identity
    authorizer = context.server.authorizer
    governs = type(authorizer) is AllowAll or may_govern(
        authorizer, identity.principal, identity.host
    )
    return Actor(identity.principal, identity.listener, governs)


def may_write_transaction(context: RequestContext, transactional_id: str) -> bool:
    """WRITE on the transactional id: every transactional request."""
    return allowed(context, AclOperation.WRITE, TRANSACTIONAL_ID, transactional_id)


def may_write_idempotently(context: RequestContext) -> bool:
    """InitProducerId without a transactional id: IDEMPOTENT_WRITE on the
    cluster, or WRITE on some topic (Kafka 3's KIP-679 rule)."""
    if allowed_on_cluster(context, AclOperation.IDEMPOTENT_WRITE):
        return True
    authorizer = context.server.authorizer
    if not isinstance(authorizer, AclAuthorizer):
        return False
    identity = context.identity
    return authorizer.authorize_by_resource_type(
        identity.principal, AclOperation.WRITE, TOPIC, identity.host
    )


def may_read_group(context: RequestContext, group_id: str) -> bool:
    """READ on the group: joining it, syncing, heartbeats, leaving, commits."""
    return allowed(context, AclOperation.READ, GROUP, group_id)


def coordinator_refused(context: RequestContext, transactional: bool, key: str) -> KafkaCode | None:
    """FindCoordinator: DESCRIBE on the group or the transactional id."""
    if transactional:
        if allowed(context, AclOperation.DESCRIBE, TRANSACTIONAL_ID, key):
            return None
        return KafkaCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    if allowed(context, AclOperation.DESCRIBE, GROUP, key):
        return None
    return KafkaCode.GROUP_AUTHORIZATION_FAILED


def offset_commit_refused(
    context: RequestContext, group_id: str, topics: Iterable[str]
) -> dict[str, KafkaCode]:
    """The topics whose offsets an OffsetCommit (or TxnOffsetCommit) may not
    commit, with the code each is answered: every topic without READ on the
    group, else those without READ on the topic."""
    if type(context.server.authorizer) is AllowAll:
        return {}
    if not may_read_group(context, group_id):
        return dict.fromkeys(topics, KafkaCode.GROUP_AUTHORIZATION_FAILED)
    refused = refused_topics(context, AclOperation.READ, topics)
    return dict.fromkeys(refused, KafkaCode.TOPIC_AUTHORIZATION_FAILED)


_CONFIG_RESOURCES = {
    # Kafka's ConfigResource.Type codes: the ACL resource each is authorized
    # on, and the code a refusal is answered with (KafkaApis / AuthHelper).
    2: (TOPIC, KafkaCode.TOPIC_AUTHORIZATION_FAILED),
    4: (CLUSTER, KafkaCode.CLUSTER_AUTHORIZATION_FAILED),
    8: (CLUSTER, KafkaCode.CLUSTER_AUTHORIZATION_FAILED),
    32: (GROUP, KafkaCode.GROUP_AUTHORIZATION_FAILED),
}


def config_refused(
    context: RequestContext, operation: AclOperation, config_resource_type: int, name: str
) -> KafkaCode | None:
    """DescribeConfigs (DESCRIBE_CONFIGS) and AlterConfigs (ALTER_CONFIGS):
    the code a config resource is refused with, or None. A broker's (and
    its loggers') configs are the cluster's; a type it does not know is
    left to the handler to refuse."""
    found = _CONFIG_RESOURCES.get(config_resource_type)
    if found is None:
        return None
    resource_type, refusal = found
    acl_name = CLUSTER_NAME if resource_type is CLUSTER else name
    return None if allowed(context, operation, resource_type, acl_name) else refusal
