"""Every real client of the suite (confluent-kafka, kafka-python, aiokafka,
kafkajs, kcat) against one ``tidelog serve`` with the ACL authorizer: each
produces and consumes through a consumer group over SASL_SSL with
SCRAM-SHA-512 and with PLAIN, and over an SSL listener with mutual TLS
whose certificate subject names the principal through
ssl.principal.mapping.rules; and each is refused as Kafka refuses it, with
what the client itself surfaces asserted: TOPIC_AUTHORIZATION_FAILED on a
topic it may not write or read, GROUP_AUTHORIZATION_FAILED for a group it
may not use, SASL_AUTHENTICATION_FAILED for a wrong password."""

from __future__ import annotations

import pytest

from tests.server.matrix_clients import CLIENTS, VALUES
from tests.server.security_matrix import ALLOWED, DENIED, Matrix, matrix

__all__ = ["matrix"]  # the module's server, a fixture

# Real clients against a server process: run once, in the C pass (the
# SASL, TLS and ACL code is the same Python in both passes).
pytestmark = pytest.mark.slow

BY_NAME = {client.name: client for client in CLIENTS}
CLIENT_NAMES = list(BY_NAME)


@pytest.mark.parametrize("access", ["scram", "plain", "mtls"])
@pytest.mark.parametrize("client", CLIENT_NAMES)
def test_produces_and_consumes(matrix: Matrix, client: str, access: str) -> None:
    topic = matrix.topic(ALLOWED)
    given = {"scram": matrix.scram, "plain": matrix.plain, "mtls": matrix.mtls}[access]()
    assert BY_NAME[client].round_trip(given, topic, f"{ALLOWED}{topic}") == VALUES


TOPIC_REFUSED = {
    "confluent-kafka": ("TOPIC_AUTHORIZATION_FAILED", "TOPIC_AUTHORIZATION_FAILED"),
    "kafka-python": ("TopicAuthorizationFailedError", "TopicAuthorizationFailedError"),
    "aiokafka": ("TopicAuthorizationFailedError", "TopicAuthorizationFailedError"),
    "kafkajs": (
        "KafkaJSNonRetriableError Not authorized to access topics: [Topic authorization failed]",
        "KafkaJSProtocolError TOPIC_AUTHORIZATION_FAILED"
        " Not authorized to access topics: [Topic authorization failed]",
    ),
    "kcat": (
        "Delivery failed for message: Broker: Topic authorization failed",
        "ERROR: Topic <topic> [0] error: Subscribed topic not available: <topic>:"
        " Broker: Topic authorization failed",
    ),
}
"""What each client surfaces when it may not write, and may not read, a topic."""


@pytest.mark.parametrize("access", ["scram", "mtls"])
@pytest.mark.parametrize("client", CLIENT_NAMES)
def test_a_topic_it_may_not_use_is_refused(matrix: Matrix, client: str, access: str) -> None:
    topic = matrix.topic(DENIED)
    given = matrix.scram() if access == "scram" else matrix.mtls()
    on_produce, on_consume = TOPIC_REFUSED[client]
    assert BY_NAME[client].refused_produce(given, topic) == on_produce
    assert BY_NAME[client].refused_consume(given, topic, f"{ALLOWED}{topic}") == on_consume


GROUP_REFUSED = {
    "confluent-kafka": "GROUP_AUTHORIZATION_FAILED",
    "kafka-python": "GroupAuthorizationFailedError",
    "aiokafka": "GroupAuthorizationFailedError",
    "kafkajs": "KafkaJSGroupCoordinatorNotFound Failed to find group coordinator"
    " / KafkaJSProtocolError GROUP_AUTHORIZATION_FAILED",
    "kcat": "ERROR: Consumer error: FindCoordinator response error:"
    " Broker: Group authorization failed",
}


@pytest.mark.parametrize("client", CLIENT_NAMES)
def test_a_group_it_may_not_read_is_refused(matrix: Matrix, client: str) -> None:
    topic = matrix.topic(ALLOWED)
    refused = BY_NAME[client].refused_group(matrix.scram(), topic, f"{DENIED}{topic}")
    assert refused == GROUP_REFUSED[client]


LOGIN_REFUSED = {
    "confluent-kafka": "_AUTHENTICATION",
    "kafka-python": "SaslAuthenticationFailedError",
    "aiokafka": "SaslAuthenticationFailed",
    "kafkajs": "KafkaJSSASLAuthenticationError",
    "kcat": "Local: Authentication failure: Authentication failed during authentication due to"
    " invalid credentials with SASL mechanism SCRAM-SHA-512",
}


@pytest.mark.parametrize("client", CLIENT_NAMES)
def test_a_wrong_password_is_refused(matrix: Matrix, client: str) -> None:
    assert (
        BY_NAME[client].refused_login(matrix.scram().but(password="wrong")) == LOGIN_REFUSED[client]
    )
