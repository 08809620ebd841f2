"""ApiVersions: what this server implements, at which versions (every
registration, see registry.py), and from v3 the features it supports and
has finalized (KIP-584).

The one feature told is ``transaction.version`` at level 2 (transactions
v2, KIP-890 part 2): a Kafka 4.0 client uses Produce v12, TxnOffsetCommit
v5 and EndTxn v5 only when the finalized level is 2 or more, and older
versions (TV1, the explicit adds) otherwise, whatever the version ranges
say. Other features (metadata.version, group.version, ...) name a
cluster's upgrade state, which one node that is its own cluster never
has to tell: they are not listed, as a broker that predates them lists
none."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.context import RequestContext
from engine.server.handlers.registry import advertised_versions, handles
from engine.transactions.metadata import TV_2

if TYPE_CHECKING:
    # The kio request classes, for the handlers' annotations only: importing
    # every version's class costs the server's start hundreds of modules.
    from engine.server.handlers.requests import ApiVersionsRequest


@handles(
    ApiKey.API_VERSIONS,
    0,
    4,
    notes={
        0: "a version this server lacks is answered at v0: UNSUPPORTED_VERSION and this list",
        3: "flexible encoding; the client's software name and version; the supported and"
        " finalized features: transaction.version finalized at 2 (docs/design/0076), its"
        " supported range 0-2 left out (KAFKA-17492: a client before Kafka 3.9 refuses a range"
        " from 0)",
        4: "the supported features whose range starts at 0 are told: transaction.version 0-2",
    },
)
def handle_api_versions(context: RequestContext, request: ApiVersionsRequest) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "error_code": KafkaCode.NONE,
        "api_keys": advertised_versions(),
        "throttle_time": 0,
    }
    if context.version >= FIRST_FEATURES_VERSION:
        answer.update(FEATURES)
        if context.version < FIRST_ZERO_MIN_FEATURES_VERSION:
            answer["supported_features"] = [f for f in SUPPORTED_FEATURES if f["min_version"] > 0]
    return answer


FIRST_FEATURES_VERSION = 3
"""ApiVersions' first version with features (tagged fields, KIP-584)."""

FIRST_ZERO_MIN_FEATURES_VERSION = 4
"""ApiVersions' first version whose answer tells a supported feature whose
range starts at level 0. Java clients before 3.9 refuse such a range (their
SupportedVersionRange wants a minimum of 1) and with it the whole answer, so
they could not connect at all; Kafka's ApiVersionsResponse leaves those
features out below v4 (alterFeatureLevel0, KAFKA-17492), and so does this."""

TRANSACTION_VERSION = "transaction.version"
TRANSACTION_VERSION_LEVEL = TV_2
"""The transaction version served: transactions v2 (engine/transactions/)."""

FINALIZED_FEATURES_EPOCH = 0
"""Kafka's epoch of the finalized features (the metadata offset that
finalized them); a client keeps the answer of the highest epoch it has
seen, so one constant epoch (the levels never change while a server runs,
and a client asks again on reconnecting) is enough, and 0 is above a
client's "none seen" of -1."""

SUPPORTED_FEATURES: list[dict[str, Any]] = [
    {"name": TRANSACTION_VERSION, "min_version": 0, "max_version": TRANSACTION_VERSION_LEVEL}
]

FEATURES: dict[str, Any] = {
    "supported_features": SUPPORTED_FEATURES,
    "finalized_features_epoch": FINALIZED_FEATURES_EPOCH,
    # As Kafka's ApiVersionsResponse: both bounds are the finalized level.
    "finalized_features": [
        {
            "name": TRANSACTION_VERSION,
            "max_version_level": TRANSACTION_VERSION_LEVEL,
            "min_version_level": TRANSACTION_VERSION_LEVEL,
        }
    ],
}


def unsupported_api_versions() -> dict[str, Any]:
    """The answer to an ApiVersions request at a version this server lacks."""
    return {
        "error_code": KafkaCode.UNSUPPORTED_VERSION,
        "api_keys": advertised_versions(),
    }
