"""The authorizer the server asks, as the handlers import it: the
definitions live in engine/authorization.py, below the server, so that the
embedded API and the wire share them (and one authorizer)."""

from __future__ import annotations

from engine.authorization import (
    ANONYMOUS,
    AUTHORIZED_OPERATIONS_OMITTED,
    CLUSTER_NAME,
    SUPPORTED_OPERATIONS,
    AclOperation,
    AllowAll,
    Authorizer,
    ResourceType,
    authorized_operations,
)

__all__ = [
    "ANONYMOUS",
    "AUTHORIZED_OPERATIONS_OMITTED",
    "CLUSTER_NAME",
    "SUPPORTED_OPERATIONS",
    "AclOperation",
    "AllowAll",
    "Authorizer",
    "ResourceType",
    "authorized_operations",
]
