"""``tidelog unmask``: grants, revokes and lists the unmask permission in
the catalog, and the embedded consumer of the next engine on the data
directory reads as it says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import engine
from engine.cli.main import main
from engine.types import TopicPartition

RULES = json.dumps([{"path": "/email", "action": "redact"}])
SENT = b'{"email": "ann@example.com"}'


def _read(data_dir: Path, principal: str) -> bytes | None:
    with engine.open(data_dir) as e:
        consumer = e.consumer(principal=principal)
        consumer.assign([TopicPartition("chats", 0)])
        consumer.seek(TopicPartition("chats", 0), 0)
        for _ in range(20):
            records = consumer.poll(timeout=0.2)
            if records:
                return records[0].value
    return None


def test_grant_list_and_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = tmp_path / "node"
    with engine.open(node) as e:
        e.create_topic("chats", 1, {"tidelog.masking.rules": RULES})
        with e.producer() as producer:
            producer.send("chats", SENT).result(30)
    assert _read(node, "User:auditor") == b'{"email":"***"}'

    assert main(["unmask", "--data-dir", str(node), "grant", "chats", "User:auditor"]) == 0
    assert main(["unmask", "--data-dir", str(node), "grant", "ch", "User:ops", "--prefixed"]) == 0
    assert main(["unmask", "--data-dir", str(node), "list"]) == 0
    listed = capsys.readouterr().out.splitlines()[-2:]
    assert listed == ["ALLOW User:auditor topic chats host *", "ALLOW User:ops topics ch* host *"]
    assert _read(node, "User:auditor") == SENT
    assert _read(node, "User:ops") == SENT
    assert _read(node, "User:other") == b'{"email":"***"}'

    assert main(["unmask", "--data-dir", str(node), "revoke", "chats", "User:auditor"]) == 0
    assert _read(node, "User:auditor") == b'{"email":"***"}'


def test_a_principal_that_is_not_type_and_name_is_refused(tmp_path: Path) -> None:
    assert main(["unmask", "--data-dir", str(tmp_path / "n"), "grant", "chats", "auditor"]) == 2
    assert not (tmp_path / "n").exists()
