"""The ACL authorizer: Kafka's StandardAuthorizer semantics over the
bindings the catalog keeps (engine/acl_bindings.py).

A request is allowed when its principal is a super user, or when some
ALLOW binding applies and no DENY binding does (DENY beats ALLOW). A
binding applies when its resource pattern matches the resource (LITERAL:
the same name or ``*``; PREFIXED: a prefix of the name), its principal is
the request's or ``User:*``, its host is the request's or ``*``, and its
operation is the one asked, ALL, or (for ALLOW only) one that implies it:
READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies
DESCRIBE_CONFIGS. A resource no binding names at all is allowed only with
``allow.everyone.if.no.acl.found``.

Authorization runs on every request, so the bindings are indexed by
(resource type, name) for literal patterns and by (resource type, prefix
length) for prefixed ones: a decision looks at one bucket per prefix
length in use, never at every binding. The index is rebuilt when the
catalog's bindings change (their version differs from the index's).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable

from engine.acl_bindings import (
    WILDCARD,
    WILDCARD_PRINCIPAL,
    AclBinding,
    AclPermission,
    PatternType,
)
from engine.authorization import (
    AclOperation,
    AllowAll,
    AuthorizationConfig,
    Authorizer,
    ResourceType,
)
from engine.catalog import CatalogState

_O = AclOperation
IMPLIED_BY: dict[int, frozenset[int]] = {
    # Kafka's StandardAuthorizerData: the ALLOW operations that grant each one
    _O.DESCRIBE: frozenset({_O.DESCRIBE, _O.READ, _O.WRITE, _O.DELETE, _O.ALTER, _O.ALL}),
    _O.DESCRIBE_CONFIGS: frozenset({_O.DESCRIBE_CONFIGS, _O.ALTER_CONFIGS, _O.ALL}),
}


class _Index:
    """The bindings, by where a decision looks them up."""

    def __init__(self, acls: Iterable[AclBinding]) -> None:
        self.literal: dict[tuple[int, str], list[AclBinding]] = defaultdict(list)
        self.prefixed: dict[tuple[int, str], list[AclBinding]] = defaultdict(list)
        lengths: dict[int, set[int]] = defaultdict(set)
        for acl in acls:
            if acl.pattern_type == PatternType.PREFIXED:
                self.prefixed[(acl.resource_type, acl.name)].append(acl)
                lengths[acl.resource_type].add(len(acl.name))
            else:
                self.literal[(acl.resource_type, acl.name)].append(acl)
        self.prefix_lengths = {rt: sorted(found) for rt, found in lengths.items()}

    def matching(self, resource_type: int, name: str) -> list[AclBinding]:
        """The bindings whose pattern matches the resource, any principal."""
        found: list[AclBinding] = []
        literal = self.literal
        found += literal.get((resource_type, name), ())
        if name != WILDCARD:
            found += literal.get((resource_type, WILDCARD), ())
        for length in self.prefix_lengths.get(resource_type, ()):
            if length > len(name):
                break
            found += self.prefixed.get((resource_type, name[:length]), ())
        return found


class AclAuthorizer:
    """Decides from the catalog's ACL bindings (see the module's note)."""

    def __init__(
        self,
        catalog: CatalogState,
        super_users: Iterable[str] = (),
        allow_everyone_if_no_acl_found: bool = False,
    ) -> None:
        self._catalog = catalog
        self.super_users = frozenset(super_users)
        self.allow_everyone_if_no_acl_found = allow_everyone_if_no_acl_found
        self._lock = threading.Lock()
        self._index = _Index(())
        self._version = -1

    def _current(self) -> _Index:
        catalog = self._catalog
        if self._version == catalog.acls_version:
            return self._index
        with self._lock:
            # The version first: the catalog replaces its bindings before it
            # bumps the version, so these bindings are at least that new.
            version = catalog.acls_version
            if version != self._version:
                self._index = _Index(catalog.acls)
                self._version = version
            return self._index

    def authorize(
        self,
        principal: str,
        operation: AclOperation,
        resource_type: ResourceType,
        name: str,
        host: str = WILDCARD,
    ) -> bool:
        if principal in self.super_users:
            return True
        acls = self._current().matching(resource_type, name)
        if not acls:
            return self.allow_everyone_if_no_acl_found
        granting = IMPLIED_BY.get(operation)
        allowed = False
        for acl in acls:
            if acl.principal not in (principal, WILDCARD_PRINCIPAL):
                continue
            if acl.host not in (host, WILDCARD):
                continue
            if acl.permission == AclPermission.DENY:
                if acl.operation in (operation, _O.ALL):
                    return False
            elif not allowed:
                if granting is not None:
                    allowed = acl.operation in granting
                else:
                    allowed = acl.operation in (operation, _O.ALL)
        return allowed

    def matching(self, resource_type: int, name: str) -> list[AclBinding]:
        """The bindings whose pattern matches the resource, any principal."""
        return self._current().matching(resource_type, name)

    def authorize_by_resource_type(
        self, principal: str, operation: AclOperation, resource_type: ResourceType, host: str
    ) -> bool:
        """Whether ``operation`` is allowed on some resource of the type
        (Kafka's authorizeByResourceType): a super user, or an ALLOW binding
        for the principal that no DENY binding for it covers (a DENY on the
        same literal name, on ``*``, or on a prefix of the name)."""
        if principal in self.super_users:
            return True
        mine = [
            acl
            for acl in self._catalog_acls()
            if acl.resource_type == resource_type
            and acl.principal in (principal, WILDCARD_PRINCIPAL)
            and acl.host in (host, WILDCARD)
            and acl.operation in (operation, _O.ALL)
        ]
        denied = [acl for acl in mine if acl.permission == AclPermission.DENY]
        for acl in mine:
            if acl.permission != AclPermission.ALLOW:
                continue
            if not any(_covers(deny, acl) for deny in denied):
                return True
        return False

    def _catalog_acls(self) -> list[AclBinding]:
        return list(self._catalog.acls)


def _covers(deny: AclBinding, allow: AclBinding) -> bool:
    """Whether every resource ``allow`` names is denied by ``deny``."""
    if deny.pattern_type == PatternType.LITERAL:
        if deny.name == WILDCARD:
            return True
        return allow.pattern_type == PatternType.LITERAL and allow.name == deny.name
    return allow.name.startswith(deny.name)


def engine_authorizer(config: AuthorizationConfig | None, catalog: CatalogState) -> Authorizer:
    """An engine's authorizer: the ACL authorizer over its catalog when
    authorization is on, else AllowAll."""
    if config is None:
        return AllowAll()
    return AclAuthorizer(catalog, config.super_users, config.allow_everyone_if_no_acl_found)
