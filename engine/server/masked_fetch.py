"""Masking on the Fetch path: which requests see a masked topic in clear,
and the masking of what the others read.

A super user, or a principal an unmask binding allows (engine/masking/
unmask.py), reads the stored bytes: the zero-copy path, nothing new per
batch. Everyone else reads the batches re-encoded with their records
masked. With no ACL authorizer there are no identities to trust, so
everyone reads masked: fail closed (docs/governance.md).
"""

from __future__ import annotations

import asyncio

from engine.acl_authorizer import AclAuthorizer
from engine.acl_bindings import TOPIC
from engine.masking.batches import mask_fetch
from engine.masking.documents import Masking
from engine.masking.unmask import unmask_granted, unmask_resource
from engine.partition import PartitionFetch
from engine.server.context import RequestContext


def masking_for(context: RequestContext, topic: str) -> Masking | None:
    """The masking the request's reads of ``topic`` get: None for a topic
    without rules or a principal who sees it in clear (no call of the
    authorizer at all for a topic without rules)."""
    masking = context.engine.masking(topic)
    if masking is None or may_unmask(context, topic):
        return None
    return masking


def may_unmask(context: RequestContext, topic: str) -> bool:
    """Whether the request's principal sees ``topic`` in clear."""
    authorizer = context.server.authorizer
    if not isinstance(authorizer, AclAuthorizer):
        return False
    identity = context.identity
    if identity.principal in authorizer.super_users:
        return True
    bindings = authorizer.matching(TOPIC, unmask_resource(topic))
    return unmask_granted(bindings, identity.principal, topic, identity.host)


async def masked(fetched: PartitionFetch, masking: Masking, limit: int) -> PartitionFetch:
    """``fetched`` masked, off the event loop (it decodes and re-encodes
    every record), within ``limit`` bytes but for the first batch, as Kafka
    bounds a partition's data."""
    if not fetched.records:
        return fetched
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, mask_fetch, fetched, masking, limit)
