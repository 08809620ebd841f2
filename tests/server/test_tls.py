"""TLS over real sockets, with a CA, server and client certificates made at
test time: confluent-kafka over SSL (the key encrypted, its password in a
file) and over SASL_SSL with SCRAM-SHA-512, kafkajs over SASL_SSL, and
mutual TLS whose client certificate names the principal through
ssl.principal.mapping.rules; and the rules themselves, on Kafka's examples."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

import engine
from engine.server.tls import NoMatchingRule, PrincipalMapper, distinguished_name
from tests.server.certificates import Tls
from tests.server.confluent_helpers import consume_values
from tests.server.conftest import ServerProcess, free_port, quiet_librdkafka
from tests.server.in_process import InProcessServer
from tests.server.test_kafkajs import kafkajs
from tests.server.test_sasl import PASSWORD, round_trip

# Real clients against a server process: run once, in the C pass (the
# SASL and TLS code is the same Python in both passes).
pytestmark = pytest.mark.slow

TIMEOUT = 30.0


@pytest.fixture(scope="module")
def tls_server(tls: Tls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("tls-server")
    process = ServerProcess(root / "data")
    ssl_port, sasl_ssl_port = free_port(), free_port()
    config = root / "tidelog.toml"
    config.write_text(
        "[server]\n"
        f'listeners = "PLAINTEXT://127.0.0.1:{process.port},SSL://127.0.0.1:{ssl_port},'
        f'SASL_SSL://127.0.0.1:{sasl_ssl_port}"\n'
        f'"ssl.keystore.location" = "{tls.keystore}"\n'
        f'"ssl.key.password.file" = "{tls.key_password}"\n'
        # round_trip's consumer is its group's one member: the first
        # rebalance need not wait Kafka's 3 s for more.
        "[engine]\ngroup_initial_rebalance_delay_ms = 0\n"
    )
    process.args = ["--config", str(config)]
    secret = root / "alice.password"
    secret.write_text(PASSWORD + "\n")
    subprocess.run(
        [sys.executable, "-m", "engine", "users", "--data-dir", str(process.data_dir),
         "add", "alice", "--password-file", str(secret)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    process.ssl_port, process.sasl_ssl_port = ssl_port, sasl_ssl_port  # type: ignore[attr-defined]
    process.start()
    yield process
    process.end_at_teardown(graceful=True)


def test_confluent_over_ssl(tls: Tls, tls_server: ServerProcess, topic: str) -> None:
    settings = {
        "bootstrap.servers": f"127.0.0.1:{tls_server.ssl_port}",  # type: ignore[attr-defined]
        "security.protocol": "SSL",
        "ssl.ca.location": str(tls.authority.ca),
        **quiet_librdkafka(),
    }
    round_trip(settings, topic)
    assert "keystore secret" not in tls_server.log()


def test_confluent_over_sasl_ssl_scram_sha_512(
    tls: Tls, tls_server: ServerProcess, topic: str
) -> None:
    settings = {
        "bootstrap.servers": f"127.0.0.1:{tls_server.sasl_ssl_port}",  # type: ignore[attr-defined]
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(tls.authority.ca),
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "alice",
        "sasl.password": PASSWORD,
        **quiet_librdkafka(),
    }
    round_trip(settings, topic)


def test_kafkajs_over_sasl_ssl(tls: Tls, tls_server: ServerProcess, topic: str) -> None:
    options: dict[str, Any] = {
        "ssl": {"ca": str(tls.authority.ca)},
        "sasl": {"mechanism": "scram-sha-256", "username": "alice", "password": PASSWORD},
    }
    bootstrap = f"localhost:{tls_server.sasl_ssl_port}"  # type: ignore[attr-defined]
    message = {"partition": 0, "key": None, "value": "ZnJvbSBrYWZrYWpz", "headers": {}}
    kafkajs("produce", bootstrap, topic=topic, messages=[message], **options)
    partitions = [{"partition": 0, "fetchOffset": "0", "maxBytes": 1 << 20}]
    fetched = kafkajs("fetch", bootstrap, topic=topic, partitions=partitions, **options)
    values = [m["value"] for answer in fetched for m in answer["messages"]]
    assert values == ["ZnJvbSBrYWZrYWpz"]  # base64 of "from kafkajs"


def test_mutual_tls_names_the_principal_by_the_mapping_rules(
    tls: Tls, tmp_path: Path, topic: str
) -> None:
    config = tls.mutual_tls(
        ssl_principal_mapping_rules="RULE:^CN=([^,]*),OU=Clients,.*$/$1/U,DEFAULT"
    )
    with engine.open(tmp_path / "node") as opened:
        opened.create_topic(topic, 1)
        wire = InProcessServer(opened, config=config)
        try:
            bootstrap = f"127.0.0.1:{wire.server.ports['SSL']}"
            settings = {
                "bootstrap.servers": bootstrap,
                "security.protocol": "SSL",
                "ssl.ca.location": str(tls.authority.ca),
                "ssl.certificate.location": str(tls.alice.certificate),
                "ssl.key.location": str(tls.alice.key),
                **quiet_librdkafka(),
            }
            reports: list[Any] = []
            producer = Producer(settings)
            producer.produce(topic, b"signed", on_delivery=lambda e, m: reports.append(e))
            assert producer.flush(TIMEOUT) == 0
            assert reports == [None]
            principals = {c.identity.principal for c in list(wire.server.connections)}
            assert principals == {"User:ALICE"}
            # Without a client certificate the handshake fails: nothing is written.
            unsigned = {
                k: v
                for k, v in settings.items()
                if k not in ("ssl.certificate.location", "ssl.key.location")
            }
            anonymous = Producer({**unsigned, "message.timeout.ms": 3000})
            anonymous.produce(topic, b"unsigned", on_delivery=lambda e, m: reports.append(e))
            assert anonymous.flush(TIMEOUT) == 0
            assert reports[1] is not None  # timed out: the handshake never succeeds
            assert opened.fetch(topic, 0, 0).high_watermark == 1  # "signed" only
        finally:
            wire.stop()


KAFKA_RULES = (
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,"
    "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,"
    "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U,"
    "DEFAULT"
)
"""The rules of Kafka's SslPrincipalMapperTest."""


@pytest.mark.parametrize(
    ("subject", "principal"),
    [
        ("CN=Duke,OU=ServiceUsers,O=Org,C=US", "Duke"),
        ("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US", "duke@sme"),
        ("cn=duke,OU=JavaSoft,O=Sun Microsystems", "DUKE"),
        ("OU=JavaSoft,O=Sun Microsystems,C=US", "OU=JavaSoft,O=Sun Microsystems,C=US"),
    ],
)
def test_kafkas_mapping_rules(subject: str, principal: str) -> None:
    assert PrincipalMapper(KAFKA_RULES).name(subject) == principal


def test_a_subject_no_rule_matches_is_refused() -> None:
    with pytest.raises(NoMatchingRule):
        PrincipalMapper("RULE:^CN=(.*),OU=Clients$/$1/").name("CN=bob,OU=Servers")
    with pytest.raises(ValueError, match="cannot read"):
        PrincipalMapper("RULE:nonsense")


def test_the_subject_is_written_as_rfc_2253() -> None:
    peercert = {
        "subject": (
            (("countryName", "US"),),
            (("organizationName", "Acme, Inc."),),
            (("commonName", "alice"),),
        )
    }
    assert distinguished_name(peercert) == "CN=alice,O=Acme\\, Inc.,C=US"


def test_a_large_request_over_tls_arrives_whole(
    tls: Tls, tls_server: ServerProcess, topic: str
) -> None:
    """A request large enough to be read straight into its own buffer
    arrives whole over TLS, where the socket's count of waiting bytes (of
    encrypted bytes) is not what the buffer grows by."""
    settings = {
        "bootstrap.servers": f"127.0.0.1:{tls_server.ssl_port}",  # type: ignore[attr-defined]
        "security.protocol": "SSL",
        "ssl.ca.location": str(tls.authority.ca),
        **quiet_librdkafka(),
    }
    value = bytes(range(256)) * 3000  # 768,000 bytes
    producer = Producer({**settings, "compression.type": "none", "linger.ms": 0})
    reports: list[Any] = []
    producer.produce(topic, value, on_delivery=lambda e, m: reports.append(e))
    assert producer.flush(TIMEOUT) == 0
    assert reports == [None]
    consumer = Consumer({**settings, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        message = consumer.poll(TIMEOUT)
        assert message is not None and message.error() is None
        assert message.value() == value
    finally:
        consumer.close()


def test_batches_kept_in_the_log_cache_are_fetched_over_tls(
    tls: Tls, tls_server: ServerProcess, topic: str
) -> None:
    """Batches fetched from the log cache are views of the requests' bytes
    that are not memoryviews (the C extension's ByteSlice): a TLS transport
    takes only bytes, bytearray and memoryview, so a small one that ends up
    a write of its own (the 128 KiB before it given as one write, a batch
    above a TLS record's size after it) is not handed to it as it is."""
    settings = {
        "bootstrap.servers": f"127.0.0.1:{tls_server.ssl_port}",  # type: ignore[attr-defined]
        "security.protocol": "SSL",
        "ssl.ca.location": str(tls.authority.ca),
        **quiet_librdkafka(),
    }
    values = [bytes([i]) * 11_000 for i in range(12)] + [b"L" * 20_000]
    producer = Producer({**settings, "compression.type": "none", "linger.ms": 0})
    for value in values:  # a Produce, and so a batch of the log cache, each
        producer.produce(topic, value)
        assert producer.flush(TIMEOUT) == 0
    assert consume_values(settings, topic, len(values)) == values
    assert "TypeError" not in tls_server.log()
