"""Consumer groups: Kafka's classic group protocol, the KIP-848 consumer
group protocol, and committed offsets.

``GroupCoordinator`` (coordinator.py) is the API; ``Engine.groups`` is the
engine's. It routes each request to a classic group's state machine
(classic.py), a KIP-848 group (consumer_group.py, its server-side
assignors in assignors.py) or the committed offsets (offset_manager.py,
their state in memory in offsets.py). Every key and value of the groups'
state log is built and read in records.py (docs/groups.md).
"""

from __future__ import annotations

from engine.groups.config import GroupConfig
from engine.groups.coordinator import GroupCoordinator
from engine.groups.lag import consumer_lag
from engine.groups.results import (
    ConsumerLag,
    GroupDescription,
    GroupListing,
    GroupState,
    JoinedMember,
    JoinResult,
    MemberDescription,
    SyncResult,
)
from engine.groups.subscription import CONSUMER_PROTOCOL_TYPE, subscribed_topics

__all__ = [
    "CONSUMER_PROTOCOL_TYPE",
    "ConsumerLag",
    "GroupConfig",
    "GroupCoordinator",
    "GroupDescription",
    "GroupListing",
    "GroupState",
    "JoinResult",
    "JoinedMember",
    "MemberDescription",
    "SyncResult",
    "consumer_lag",
    "subscribed_topics",
]
