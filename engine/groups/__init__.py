"""Consumer groups: Kafka's classic group protocol, the KIP-848 consumer
group protocol, and committed offsets.

``GroupCoordinator`` (coordinator.py) is the API; ``Engine.groups`` is the
engine's. It routes each request to the classic groups (classic_groups.py;
one group's state machine in classic.py, its join path in
classic_join.py), the KIP-848 groups
(consumer_groups.py; one group in consumer_group.py, the server-side
assignors in assignors.py) or the committed offsets (offset_manager.py;
their state in memory in offset_store.py). All of them run under one lock,
with one timer thread and one state log (executor.py), whose every key and
value is built and read in records.py (docs/groups.md).
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
    LeaveResult,
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
    "LeaveResult",
    "MemberDescription",
    "SyncResult",
    "consumer_lag",
    "subscribed_topics",
]
