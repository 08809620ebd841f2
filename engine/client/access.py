"""What an embedded client's principal may do: the questions a Kafka broker
asks of a wire client's requests (KafkaApis), asked of the engine's
authorizer for the principal the client was opened with.

Produce: WRITE on the topic, CREATE on it or the cluster to create it where
it does not exist (and on the transactional id for a
transactional producer); an idempotent producer's InitProducerId:
IDEMPOTENT_WRITE on the cluster or WRITE on some topic (KIP-679). Fetch:
READ on the topic (which grants the DESCRIBE its metadata lookups need).
Groups: READ on the group. A refusal raises the engine's typed error, the
one whose Kafka code the server answers for the same refusal.

An engine without authorization (``AllowAll``) asks nothing: one check at
construction, none per batch.
"""

from __future__ import annotations

from engine.acl_authorizer import AclAuthorizer
from engine.authorization import (
    CLUSTER_NAME,
    AclOperation,
    AllowAll,
    Authorizer,
    ClusterAuthorizationFailed,
    GroupAuthorizationFailed,
    ResourceType,
    TopicAuthorizationFailed,
    TransactionalIdAuthorizationFailed,
)

EMBEDDED_HOST = "*"
"""The host an embedded client asks from: it has no address, so only ACLs
for every host (``*``) apply to it."""


class Access:
    """One principal's questions to one authorizer."""

    __slots__ = ("_authorizer", "_open", "principal")

    def __init__(self, authorizer: Authorizer, principal: str) -> None:
        self._authorizer = authorizer
        self._open = type(authorizer) is AllowAll
        self.principal = principal

    def _allowed(self, operation: AclOperation, resource_type: ResourceType, name: str) -> bool:
        return self._open or self._authorizer.authorize(
            self.principal, operation, resource_type, name, EMBEDDED_HOST
        )

    def topic(self, operation: AclOperation, topic: str) -> None:
        if not self._allowed(operation, ResourceType.TOPIC, topic):
            raise TopicAuthorizationFailed(self.principal, operation, topic)

    def create_topic(self, topic: str) -> None:
        """CREATE on the cluster or on the topic, as Kafka's auto-creation
        asks (the engine's CreateCheck for a send to an unknown topic)."""
        if not (
            self._allowed(AclOperation.CREATE, ResourceType.CLUSTER, CLUSTER_NAME)
            or self._allowed(AclOperation.CREATE, ResourceType.TOPIC, topic)
        ):
            raise TopicAuthorizationFailed(self.principal, AclOperation.CREATE, topic)

    def group(self, operation: AclOperation, group_id: str) -> None:
        if not self._allowed(operation, ResourceType.GROUP, group_id):
            raise GroupAuthorizationFailed(self.principal, operation, group_id)

    def transactional_id(self, operation: AclOperation, transactional_id: str) -> None:
        if not self._allowed(operation, ResourceType.TRANSACTIONAL_ID, transactional_id):
            raise TransactionalIdAuthorizationFailed(self.principal, operation, transactional_id)

    def idempotent_write(self) -> None:
        """IDEMPOTENT_WRITE on the cluster, or WRITE on some topic (KIP-679)."""
        if self._allowed(AclOperation.IDEMPOTENT_WRITE, ResourceType.CLUSTER, CLUSTER_NAME):
            return
        authorizer = self._authorizer
        if isinstance(authorizer, AclAuthorizer) and authorizer.authorize_by_resource_type(
            self.principal, AclOperation.WRITE, ResourceType.TOPIC, EMBEDDED_HOST
        ):
            return
        raise ClusterAuthorizationFailed(self.principal, AclOperation.IDEMPOTENT_WRITE)
