"""The ``[tables]`` section of a serve config file, and a catalog that
cannot be reached: the engine keeps serving and says why its table waits."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from engine.server.config import ConfigFileError, load_config_file
from engine.tables import TablesConfig
from tests.tables.conftest import TABLE_ON, open_engine


def test_the_tables_section_sets_the_engines_tables_config(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(
        """
[tables]
catalog = "rest"
uri = "http://127.0.0.1:8181"
namespace = "audit"
commit_records = 5000
poll_interval_s = 0.5

[tables.properties]
credential = "client:secret"
"s3.region" = "eu-west-1"
"""
    )
    tables = load_config_file(path).engine["tables"]
    assert tables == TablesConfig(
        catalog="rest",
        uri="http://127.0.0.1:8181",
        namespace="audit",
        commit_records=5000,
        poll_interval_s=0.5,
        properties={"credential": "client:secret", "s3.region": "eu-west-1"},
    )


@pytest.mark.parametrize(
    ("section", "reason"),
    [
        ('catalog = "rest"', "needs its uri"),
        ('catalog = "hive"', "must be one of"),
        ("commit_records = 0", "commit_records must be a 64-bit integer, 1 or more, not 0"),
        ('commit_bytes = "big"', "must be an integer"),
        ("shards = 3", "unknown keys"),
        ('namespace = "a.b"', "namespace"),
    ],
)
def test_a_bad_tables_section_is_refused(tmp_path: Path, section: str, reason: str) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(f"[tables]\n{section}\n")
    with pytest.raises(ConfigFileError, match=reason):
        load_config_file(path)


def _bound_port(sock: socket.socket) -> int:
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    return port


def test_an_unreachable_catalog_leaves_the_engine_serving(tmp_path: Path) -> None:
    # The port stays bound, never listened on, for the whole test: a
    # connection to it is refused, and no other process on the machine can
    # take the port and answer in the catalog's place meanwhile.
    with (
        socket.socket() as refusing,
        open_engine(
            tmp_path, catalog="rest", uri=f"http://127.0.0.1:{_bound_port(refusing)}"
        ) as engine,
    ):
        engine.create_topic("audit", 1, TABLE_ON)
        producer = engine.producer()
        producer.send("audit", b"x")
        producer.flush()
        assert engine.flush(30)
        with pytest.raises(Exception, match=r"127\.0\.0\.1"):
            engine.commit_tables()
        (status,) = engine.table_status()
        assert status.topic == "audit"
        assert status.records == 0
        assert status.last_error
        producer.send("audit", b"still served")
        producer.flush()
        assert engine.offsets("audit", 0)[1] == 2


def test_the_tables_section_in_the_server_doc_shows_the_defaults(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "server.md").read_text()
    block = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "tidelog.toml"
    path.write_text(block)
    assert load_config_file(path).engine["tables"] == TablesConfig()
