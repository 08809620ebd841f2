"""Request handlers, one module per API family; each handler is a small
function from a decoded request to a response dict (see context.py), and
registers itself, beside its definition, with its API key and versions
(registry.py). Importing this package imports every handler module, and so
makes every registration."""

from __future__ import annotations

from engine.server.handlers import (
    acls,
    api_versions,
    client_quotas,
    configs,
    consumer_groups,
    delegation_tokens,
    fetch,
    groups,
    log_dirs,
    metadata,
    offsets,
    produce,
    sasl,
    topic_partitions,
    topics,
    transactions,
    users,
)

__all__ = [
    "acls",
    "api_versions",
    "client_quotas",
    "configs",
    "consumer_groups",
    "delegation_tokens",
    "fetch",
    "groups",
    "log_dirs",
    "metadata",
    "offsets",
    "produce",
    "sasl",
    "topic_partitions",
    "topics",
    "transactions",
    "users",
]
