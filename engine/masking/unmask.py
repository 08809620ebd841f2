"""Who may see a masked topic in clear: the unmask permission, kept with
the ACLs in the catalog as an ordinary binding so Kafka's admin clients
manage it with CreateAcls, DescribeAcls and DeleteAcls.

Kafka's ACL operations and resource types are fixed enums that clients
check, so the permission is a reserved resource name rather than a new
operation: READ (or ALL) on the TOPIC resource ``tidelog.unmask:<topic>``,
LITERAL for one topic or PREFIXED for every topic whose name starts with
what follows the colon. No topic can take such a name (a colon is not
allowed in one), so the binding never grants anything else. A DENY binding
beats an ALLOW, as in Kafka. Only bindings whose name starts with the
reserved prefix count: a wildcard ``*`` topic binding, or a PREFIXED one
shorter than the prefix, grants READ on topics but never unmasks them, and
``allow.everyone.if.no.acl.found`` does not apply. Fail closed.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.acl_bindings import (
    TOPIC,
    WILDCARD,
    WILDCARD_PRINCIPAL,
    AclBinding,
    AclPermission,
    PatternType,
)

UNMASK_PREFIX = "tidelog.unmask:"
READ, ALL = 3, 2
"""Kafka's AclOperation codes of the operations that grant unmask."""


def unmask_resource(topic: str) -> str:
    """The resource name an unmask binding for ``topic`` names."""
    return UNMASK_PREFIX + topic


def unmask_binding(topic: str, principal: str, *, prefixed: bool = False) -> AclBinding:
    """The ALLOW binding that lets ``principal`` read ``topic`` (or, with
    ``prefixed``, every topic whose name starts with it) in clear."""
    pattern = PatternType.PREFIXED if prefixed else PatternType.LITERAL
    return AclBinding(
        TOPIC, unmask_resource(topic), pattern, principal, WILDCARD, READ, AclPermission.ALLOW
    )


def applies(acl: AclBinding, topic: str) -> bool:
    """Whether the binding names the unmask resource of ``topic``."""
    if acl.resource_type != TOPIC or not acl.name.startswith(UNMASK_PREFIX):
        return False
    if acl.pattern_type == PatternType.PREFIXED:
        return unmask_resource(topic).startswith(acl.name)
    return acl.pattern_type == PatternType.LITERAL and acl.name == unmask_resource(topic)


def unmask_granted(
    bindings: Iterable[AclBinding], principal: str, topic: str, host: str = WILDCARD
) -> bool:
    """Whether ``bindings`` let ``principal``, from ``host``, see ``topic``
    in clear: an ALLOW that applies, and no DENY that does."""
    allowed = False
    for acl in bindings:
        if acl.principal not in (principal, WILDCARD_PRINCIPAL):
            continue
        if acl.host not in (host, WILDCARD) or acl.operation not in (READ, ALL):
            continue
        if not applies(acl, topic):
            continue
        if acl.permission == AclPermission.DENY:
            return False
        allowed = allowed or acl.permission == AclPermission.ALLOW
    return allowed
