"""ACL bindings as the catalog keeps them: what a Kafka ACL says (a
resource pattern, a principal, a host, an operation, a permission), their
msgpack form, and the filters Kafka's DescribeAcls and DeleteAcls match them
with (Kafka's AclBindingFilter.matches). Deciding a request is the
authorizer's job (engine/acl_authorizer.py).
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

from engine.authorization import CLUSTER_NAME

WILDCARD = "*"
"""The resource name, principal (``User:*``) and host that match any."""
WILDCARD_PRINCIPAL = "User:*"


class PatternType(enum.IntEnum):
    """Kafka's PatternType codes: bindings are LITERAL or PREFIXED; ANY and
    MATCH exist only in filters."""

    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class AclPermission(enum.IntEnum):
    """Kafka's AclPermissionType codes."""

    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


ANY_RESOURCE_TYPE = 1
TOPIC, CLUSTER, USER = 2, 4, 7
"""The resource types a binding may name run from TOPIC to USER (Kafka's
ResourceType codes)."""
ANY_OPERATION, ALL_OPERATIONS, DESCRIBE_TOKENS = 1, 2, 14
"""The operations a binding may name run from ALL to DESCRIBE_TOKENS."""


class AclBinding(NamedTuple):
    """One ACL. Codes are Kafka's (ResourceType, PatternType, AclOperation,
    AclPermissionType)."""

    resource_type: int
    name: str
    pattern_type: int
    principal: str
    host: str
    operation: int
    permission: int

    def to_wire(self) -> list[Any]:
        return list(self)

    @classmethod
    def from_wire(cls, raw: list[Any]) -> AclBinding:
        rt, name, pattern, principal, host, operation, permission = raw
        return cls(
            int(rt),
            str(name),
            int(pattern),
            str(principal),
            str(host),
            int(operation),
            int(permission),
        )


class AclFilter(NamedTuple):
    """A DescribeAcls / DeleteAcls filter: None (and the ANY codes) match
    anything; pattern MATCH matches the bindings that would apply to the
    named resource (literal, wildcard and prefixes of it)."""

    resource_type: int
    name: str | None
    pattern_type: int
    principal: str | None
    host: str | None
    operation: int
    permission: int

    def invalid(self) -> str | None:
        """Why Kafka refuses this filter (INVALID_REQUEST), or None: a code
        its ``fromCode`` reads as UNKNOWN, past the table's end as well as 0
        (AclControlManager.validateFilter)."""
        if not ANY_RESOURCE_TYPE <= self.resource_type <= USER:
            return f"unknown resource type {self.resource_type}"
        if self.pattern_type <= 0 or self.pattern_type > PatternType.PREFIXED:
            return f"unknown pattern type {self.pattern_type}"
        if not ANY_OPERATION <= self.operation <= DESCRIBE_TOKENS:
            return f"unknown operation {self.operation}"
        if self.permission <= 0 or self.permission > AclPermission.ALLOW:
            return f"unknown permission type {self.permission}"
        return None

    def matches(self, acl: AclBinding) -> bool:
        if self.resource_type not in (ANY_RESOURCE_TYPE, acl.resource_type):
            return False
        if not self._matches_pattern(acl):
            return False
        if self.principal is not None and self.principal != acl.principal:
            return False
        if self.host is not None and self.host != acl.host:
            return False
        if self.operation not in (ANY_OPERATION, acl.operation):
            return False
        return self.permission in (AclPermission.ANY, acl.permission)

    def _matches_pattern(self, acl: AclBinding) -> bool:
        # Kafka's ResourcePatternFilter.matches
        pattern, name = self.pattern_type, self.name
        if pattern not in (PatternType.ANY, PatternType.MATCH, acl.pattern_type):
            return False
        if name is None:
            return True
        if pattern in (PatternType.ANY, acl.pattern_type):
            return name == acl.name
        # MATCH: the bindings that apply to the resource called ``name``
        if acl.pattern_type == PatternType.LITERAL:
            return acl.name in (name, WILDCARD)
        return name.startswith(acl.name)


def binding_invalid(acl: AclBinding) -> str | None:
    """Why Kafka refuses to create this binding (INVALID_REQUEST), or None
    (Kafka's AclApis.handleCreateAcls and AclControlManager.validateNewAcl)."""
    if not TOPIC <= acl.resource_type <= USER:
        return f"invalid resource type {acl.resource_type}"
    if acl.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
        return f"invalid pattern type {acl.pattern_type}"
    if not ALL_OPERATIONS <= acl.operation <= DESCRIBE_TOKENS:
        return f"invalid operation {acl.operation}"
    if acl.permission not in (AclPermission.DENY, AclPermission.ALLOW):
        return f"invalid permission type {acl.permission}"
    if acl.resource_type == CLUSTER and acl.name != CLUSTER_NAME:
        # Kafka's AclApis.handleCreateAcls: a binding on another cluster
        # name would be stored and never apply
        return f"the only valid name for the CLUSTER resource is {CLUSTER_NAME}"
    if not acl.name:
        return "the resource name is empty"
    if ":" not in acl.principal or acl.principal.startswith(":"):
        return f"the principal {acl.principal!r} is not TYPE:NAME"
    if not acl.host:
        return "the host is empty"
    return None
