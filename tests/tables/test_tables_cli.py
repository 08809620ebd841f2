"""``tidelog tables status``: what the catalog says of each table topic's
table, read beside an open engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.engine import Engine
from tests.tables.conftest import TABLE_ON


def test_status_lists_each_tables_rows_and_positions(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine.create_topic("agent.calls", 2, TABLE_ON)
    engine.create_topic("plain", 1)
    producer = engine.producer()
    for i in range(7):
        producer.send("agent.calls", b"v", partition=i % 2)
    producer.flush()
    assert engine.flush(30)
    engine.commit_tables()
    store = f"file://{tmp_path / 'objects'}"
    status = main(
        [
            "tables",
            "status",
            "--data-dir",
            str(tmp_path / "data"),
            "--object-store",
            store,
            "--json",
        ]
    )
    assert status == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["table"] == "tidelog.agent_calls"
    assert row["topic"] == "agent.calls"
    assert row["rows"] == 7
    assert row["files"] >= 1
    assert row["positions"] == {"0": 4, "1": 3}


def test_status_of_a_data_dir_without_tables_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "never-served"
    assert main(["tables", "status", "--data-dir", str(data_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert not (data_dir / "tables").exists()
