"""Which operations a principal may perform on a resource: the one question
handlers ask before they act, and the answer KIP-430's authorized
operations report (Metadata, DescribeCluster, DescribeGroups,
ConsumerGroupDescribe).

The server holds one ``Authorizer``: ``AllowAll`` (every operation a
resource type has is allowed to everyone) unless the server's config names
the ACL authorizer (acl_authorizer.py); the handlers ask it through
authorize.py.
"""

from __future__ import annotations

import enum
from typing import Protocol


class AclOperation(enum.IntEnum):
    """Kafka's AclOperation codes."""

    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class ResourceType(enum.IntEnum):
    """Kafka's ACL resource types (not the config resource types)."""

    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


_O = AclOperation
SUPPORTED_OPERATIONS: dict[ResourceType, frozenset[AclOperation]] = {
    # Kafka's AclEntry.supportedOperations
    ResourceType.TOPIC: frozenset(
        {_O.READ, _O.WRITE, _O.CREATE, _O.DESCRIBE, _O.DELETE, _O.ALTER}
        | {_O.DESCRIBE_CONFIGS, _O.ALTER_CONFIGS}
    ),
    ResourceType.GROUP: frozenset(
        {_O.READ, _O.DESCRIBE, _O.DELETE, _O.DESCRIBE_CONFIGS, _O.ALTER_CONFIGS}
    ),
    ResourceType.CLUSTER: frozenset(
        {_O.CREATE, _O.CLUSTER_ACTION, _O.DESCRIBE_CONFIGS, _O.ALTER_CONFIGS}
        | {_O.IDEMPOTENT_WRITE, _O.ALTER, _O.DESCRIBE}
    ),
    ResourceType.TRANSACTIONAL_ID: frozenset({_O.DESCRIBE, _O.WRITE}),
    ResourceType.DELEGATION_TOKEN: frozenset({_O.DESCRIBE}),
    ResourceType.USER: frozenset({_O.CREATE_TOKENS, _O.DESCRIBE_TOKENS}),
}

CLUSTER_NAME = "kafka-cluster"
"""The name of the one cluster resource (Kafka's Resource.CLUSTER_NAME)."""
ANONYMOUS = "User:ANONYMOUS"
"""The principal of a connection that did not authenticate."""
AUTHORIZED_OPERATIONS_OMITTED = -(2**31)
"""What a response carries when its request did not ask for the operations."""


class Authorizer(Protocol):
    def authorize(
        self,
        principal: str,
        operation: AclOperation,
        resource_type: ResourceType,
        name: str,
        host: str = "*",
    ) -> bool:
        """Whether ``principal``, connected from ``host``, may perform
        ``operation`` on the resource."""
        ...


class AllowAll:
    """Every operation, for everyone: the server without ACLs."""

    def authorize(self, *question: object, **named: object) -> bool:
        """True, whatever is asked (Authorizer.authorize's arguments)."""
        return True


def authorized_operations(
    authorizer: Authorizer,
    principal: str,
    resource_type: ResourceType,
    name: str,
    host: str = "*",
) -> int:
    """KIP-430's bitfield: bit N set when operation N is allowed on the
    resource, among those its type has."""
    bits = 0
    for operation in SUPPORTED_OPERATIONS[resource_type]:
        if authorizer.authorize(principal, operation, resource_type, name, host):
            bits |= 1 << operation
    return bits
