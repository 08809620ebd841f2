"""History read back from the object store is served over TLS as it was
produced (docs/design/0154, "Fetched blocks"): with the C extension the
batches of a fetched block are ByteSlices of the GET's bytes, which an
asyncio TLS transport does not take as they are, so a small one that is a
write of its own must reach it as a view (engine/server/tls.py); a real
librdkafka consumer reads every record back."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer

import engine
from engine.server.config import ServerConfig, parse_listeners
from tests.server.certificates import Tls
from tests.server.confluent_helpers import consume_values
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer

# A real client against a server: run once, in the C pass (the pure twin's
# batches are memoryviews, which the transport takes as they are).
pytestmark = pytest.mark.slow

TIMEOUT = 30.0


def _ssl_server(opened: engine.Engine, tls: Tls) -> InProcessServer:
    config = ServerConfig(
        listeners=parse_listeners("SSL://127.0.0.1:0"),
        ssl_keystore_location=str(tls.keystore),
        ssl_key_password_file=str(tls.key_password),
    )
    return InProcessServer(opened, config=config)


def _settings(wire: InProcessServer, tls: Tls) -> dict[str, object]:
    return {
        "bootstrap.servers": f"127.0.0.1:{wire.server.ports['SSL']}",
        "security.protocol": "SSL",
        "ssl.ca.location": str(tls.authority.ca),
        **quiet_librdkafka(),
    }


def test_history_fetched_from_the_object_store_is_consumed_over_tls(
    tls: Tls, tmp_path: Path, topic: str
) -> None:
    # Small batches, each a Produce (a stored batch) of its own, with a
    # batch above a TLS record's size after them: in a fetch's answer the
    # last small one is a write of its own.
    values = [bytes([i]) * 11_000 for i in range(12)] + [b"L" * 20_000] + [b"s" * 300] * 3
    with engine.open(tmp_path / "node") as opened:
        opened.create_topic(topic, 1)
        wire = _ssl_server(opened, tls)
        try:
            producer = Producer({**_settings(wire, tls), "compression.type": "none"})
            for value in values:
                producer.produce(topic, value)
                assert producer.flush(TIMEOUT) == 0
        finally:
            wire.stop()
    with engine.open(tmp_path / "node") as reopened:  # uploaded at close: none in the log cache
        gets_before = reopened.store.reader.gets
        wire = _ssl_server(reopened, tls)
        try:
            fetched = consume_values(_settings(wire, tls), topic, len(values))
        finally:
            wire.stop()
        assert reopened.store.reader.gets > gets_before  # read from the object store
    assert fetched == values
