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
    FIND_COORDINATOR = 10
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    DELETE_RECORDS = 21
    INIT_PRODUCER_ID = 22
    OFFSET_FOR_LEADER_EPOCH = 23
    DESCRIBE_CONFIGS = 32
    ALTER_CONFIGS = 33
    CREATE_PARTITIONS = 37
    INCREMENTAL_ALTER_CONFIGS = 44
    DESCRIBE_CLUSTER = 60


SUPPORTED_VERSIONS: dict[ApiKey, tuple[int, int]] = {
    # v12 means "transactions v2" (KIP-890), v13 addresses topics by id.
    ApiKey.PRODUCE: (3, 11),
    # v13+ address topics by id; v16 adds node endpoints for leader changes.
    ApiKey.FETCH: (4, 15),
    # v7 adds MAX_TIMESTAMP (-3), v8+ tiered-storage offsets.
    ApiKey.LIST_OFFSETS: (1, 6),
    ApiKey.METADATA: (0, 12),
    ApiKey.FIND_COORDINATOR: (0, 4),
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
