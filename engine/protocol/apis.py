"""The APIs this server implements, the versions it advertises, and the
message schemas for each.

A client that sees an API version in the ApiVersions response will use it,
so only versions whose every field the handlers honour are listed. Newer
versions are added here once their handler covers what they add.
"""

from __future__ import annotations

from enum import IntEnum
from functools import cache

from kio.index import load_request_schema, load_response_schema


class ApiKey(IntEnum):
    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    DELETE_RECORDS = 21
    INIT_PRODUCER_ID = 22
    OFFSET_FOR_LEADER_EPOCH = 23
    ADD_PARTITIONS_TO_TXN = 24
    ADD_OFFSETS_TO_TXN = 25
    END_TXN = 26
    TXN_OFFSET_COMMIT = 28
    DESCRIBE_CONFIGS = 32
    ALTER_CONFIGS = 33
    CREATE_PARTITIONS = 37
    DELETE_GROUPS = 42
    INCREMENTAL_ALTER_CONFIGS = 44
    OFFSET_DELETE = 47
    DESCRIBE_CLUSTER = 60
    DESCRIBE_PRODUCERS = 61
    DESCRIBE_TRANSACTIONS = 65
    LIST_TRANSACTIONS = 66
    CONSUMER_GROUP_HEARTBEAT = 68
    CONSUMER_GROUP_DESCRIBE = 69


SUPPORTED_VERSIONS: dict[ApiKey, tuple[int, int]] = {
    # v12 means "transactions v2" (KIP-890), v13 addresses topics by id.
    ApiKey.PRODUCE: (3, 11),
    # v13+ address topics by id; v16 adds node endpoints for leader changes.
    ApiKey.FETCH: (4, 15),
    # v7 adds MAX_TIMESTAMP (-3), v8+ tiered-storage offsets.
    ApiKey.LIST_OFFSETS: (1, 6),
    ApiKey.METADATA: (0, 12),
    ApiKey.FIND_COORDINATOR: (0, 4),
    # Consumer groups. OffsetCommit and OffsetFetch v9 carry KIP-848 member
    # epochs (v10 addresses topics by id); DescribeGroups v6 answers
    # GROUP_ID_NOT_FOUND.
    ApiKey.OFFSET_COMMIT: (2, 9),
    ApiKey.OFFSET_FETCH: (1, 9),
    ApiKey.JOIN_GROUP: (0, 9),
    ApiKey.HEARTBEAT: (0, 4),
    ApiKey.LEAVE_GROUP: (0, 5),
    ApiKey.SYNC_GROUP: (0, 5),
    ApiKey.DESCRIBE_GROUPS: (0, 5),
    ApiKey.LIST_GROUPS: (0, 5),
    ApiKey.DELETE_GROUPS: (0, 2),
    ApiKey.OFFSET_DELETE: (0, 0),
    ApiKey.API_VERSIONS: (0, 4),
    ApiKey.CREATE_TOPICS: (2, 7),
    ApiKey.DELETE_TOPICS: (1, 6),
    ApiKey.DELETE_RECORDS: (0, 2),
    # v5 adds transactions v2 (KIP-890), v6 two-phase commit (KIP-939).
    ApiKey.INIT_PRODUCER_ID: (0, 4),
    ApiKey.OFFSET_FOR_LEADER_EPOCH: (2, 4),
    ApiKey.DESCRIBE_CONFIGS: (1, 4),
    ApiKey.ALTER_CONFIGS: (0, 2),
    ApiKey.CREATE_PARTITIONS: (0, 3),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: (0, 1),
    ApiKey.DESCRIBE_CLUSTER: (0, 1),
    # v4+ batch many transactional ids, broker to broker (KIP-890).
    ApiKey.ADD_PARTITIONS_TO_TXN: (0, 3),
    # v4+ are transactions v2 (KIP-890).
    ApiKey.ADD_OFFSETS_TO_TXN: (0, 3),
    ApiKey.END_TXN: (0, 3),
    ApiKey.TXN_OFFSET_COMMIT: (0, 3),
    ApiKey.DESCRIBE_PRODUCERS: (0, 0),
    ApiKey.DESCRIBE_TRANSACTIONS: (0, 0),
    # v2 filters by transactional id pattern (KIP-1152).
    ApiKey.LIST_TRANSACTIONS: (0, 1),
    # The consumer group protocol (KIP-848); v1 members make their own
    # member ids and may subscribe by regex.
    ApiKey.CONSUMER_GROUP_HEARTBEAT: (0, 1),
    ApiKey.CONSUMER_GROUP_DESCRIBE: (0, 1),
}


def is_supported(api_key: int, api_version: int) -> bool:
    versions = SUPPORTED_VERSIONS.get(api_key)  # type: ignore[call-overload]
    return versions is not None and versions[0] <= api_version <= versions[1]


@cache
def request_schema(api_key: int, api_version: int) -> type:
    return load_request_schema(api_key, api_version)


@cache
def response_schema(api_key: int, api_version: int) -> type:
    return load_response_schema(api_key, api_version)


@cache
def is_flexible(api_key: int, api_version: int) -> bool:
    """Whether this version uses compact encodings and tagged fields (and
    so a request header with tagged fields)."""
    return bool(getattr(request_schema(api_key, api_version), "__flexible__", False))


def response_header_is_flexible(api_key: int, api_version: int) -> bool:
    # ApiVersions responses keep header v0 in every version, so that a client
    # can read the response even when it sent a version the server lacks.
    return api_key != ApiKey.API_VERSIONS and is_flexible(api_key, api_version)
