"""Which operations a principal may perform on a resource: Kafka's ACL
operations and resource types, the ``Authorizer`` protocol, the config that
turns authorization on for an engine, and the typed errors a refusal raises.

An engine opened with ``EngineConfig.authorization`` holds one ACL
authorizer (engine/acl_authorizer.py) over the ACLs in its catalog; the
embedded clients ask it for the principal they were opened with
(engine/client/access.py) and the wire server asks the same one for each
connection's principal (engine/server/authorize.py). Without it, every
operation is allowed to everyone (``AllowAll``), and nothing is asked.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from engine.config_ranges import AUTHORIZATION_FLAGS, AUTHORIZATION_TEXTS
from engine.errors import EngineError
from engine.protocol.kafka_code import KafkaCode
from s3stream.ranges import check_flags, check_texts


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

    def authorize(
        self,
        principal: str,
        operation: AclOperation,
        resource_type: ResourceType,
        name: str,
        host: str = "*",
    ) -> bool:
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


@dataclass(frozen=True)
class AuthorizationConfig:
    """Authorization on: the ACL authorizer over the catalog's ACLs, with
    Kafka's ``super.users`` and ``allow.everyone.if.no.acl.found``."""

    super_users: tuple[str, ...] = ()
    allow_everyone_if_no_acl_found: bool = False

    def __post_init__(self) -> None:
        check_texts(self, AUTHORIZATION_TEXTS)
        check_flags(self, AUTHORIZATION_FLAGS)


class TopicAuthorizationFailed(EngineError):
    """The principal may not perform the operation on the topic."""

    code = KafkaCode.TOPIC_AUTHORIZATION_FAILED

    def __init__(self, principal: str, operation: AclOperation, topic: str) -> None:
        super().__init__(f"{principal} may not {operation.name} topic {topic!r}")
        self.principal = principal
        self.operation = operation
        self.topic = topic


class GroupAuthorizationFailed(EngineError):
    """The principal may not perform the operation on the consumer group."""

    code = KafkaCode.GROUP_AUTHORIZATION_FAILED

    def __init__(self, principal: str, operation: AclOperation, group_id: str) -> None:
        super().__init__(f"{principal} may not {operation.name} group {group_id!r}")
        self.principal = principal
        self.operation = operation
        self.group_id = group_id


class TransactionalIdAuthorizationFailed(EngineError):
    """The principal may not perform the operation on the transactional id."""

    code = KafkaCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED

    def __init__(self, principal: str, operation: AclOperation, transactional_id: str) -> None:
        super().__init__(
            f"{principal} may not {operation.name} transactional id {transactional_id!r}"
        )
        self.principal = principal
        self.operation = operation
        self.transactional_id = transactional_id


class ClusterAuthorizationFailed(EngineError):
    """The principal may not perform the operation on the cluster."""

    code = KafkaCode.CLUSTER_AUTHORIZATION_FAILED

    def __init__(self, principal: str, operation: AclOperation) -> None:
        super().__init__(f"{principal} may not {operation.name} the cluster")
        self.principal = principal
        self.operation = operation
