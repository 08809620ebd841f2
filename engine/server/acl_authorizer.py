"""The server's authorizer, from its config: Kafka's authorizer.class.name.
The ACL authorizer itself is engine/acl_authorizer.py (below the server, so
the embedded API asks the same one)."""

from __future__ import annotations

from engine.acl_authorizer import IMPLIED_BY, AclAuthorizer
from engine.authorization import AllowAll, Authorizer
from engine.engine import Engine
from engine.server.config import ServerConfig

__all__ = ["IMPLIED_BY", "AclAuthorizer", "authorizer_for"]


def authorizer_for(config: ServerConfig, engine: Engine) -> Authorizer:
    """The authorizer the config names: Kafka's authorizer.class.name. An
    engine opened with authorization on brings its own, which the server
    shares whatever its config says (``tidelog serve`` opens the engine
    from the same config), so the embedded API and the wire decide alike."""
    if engine.config.authorization is not None:
        return engine.authorizer
    if config.authorizer == "acl":
        return AclAuthorizer(
            engine.catalog.state, config.super_users, config.allow_everyone_if_no_acl_found
        )
    return AllowAll()
