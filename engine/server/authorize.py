"""The authorization each API asks before it acts, as Kafka's KafkaApis
asks it (AuthHelper.authorize): small questions a handler asks in one call,
answered from the server's authorizer and the request's identity.

With no authorizer configured (AllowAll) every answer is yes without
looking further, so the produce and fetch paths pay one type check.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.server.authorizer import CLUSTER_NAME, AclOperation, AllowAll, ResourceType
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


def may_create_topic(context: RequestContext, name: str) -> bool:
    """CREATE on the cluster, or on the topic (Kafka's CreateTopics and
    auto-creation)."""
    return allowed_on_cluster(context, AclOperation.CREATE) or allowed(
        context, AclOperation.CREATE, TOPIC, name
    )
