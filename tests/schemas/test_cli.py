"""``tidelog schemas`` on a data directory, as ``tidelog users`` works
(the same commands against a server's URL are in
tests/server/test_schema_registry.py)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

import engine
from engine.cli.main import main
from engine.cli.schemas import AGENT_ACTIONS_SUBJECT, agent_action_schema


def run(capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str) -> tuple[int, str, str]:
    status = main(["schemas", "--data-dir", str(data_dir), *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_init_list_get_register_and_delete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    status, out, _ = run(capsys, data, "init")
    assert (
        status == 0
        and out.strip() == f"{AGENT_ACTIONS_SUBJECT}: agent-action schema registered, id 1"
    )
    # init again finds the same schema: same id, no new version
    assert run(capsys, data, "init")[1].endswith("id 1\n")
    pay = tmp_path / "pay.avsc"
    pay.write_text('{"type": "record", "name": "Pay", "fields": [{"name": "c", "type": "long"}]}')
    assert run(capsys, data, "register", "pay-value", str(pay)) == (0, "pay-value: id 2\n", "")
    assert run(capsys, data, "list")[1].split() == [AGENT_ACTIONS_SUBJECT, "pay-value"]
    status, out, _ = run(capsys, data, "get", AGENT_ACTIONS_SUBJECT)
    shown = json.loads(out)
    assert (shown["version"], shown["id"], shown["schemaType"]) == (1, 1, "JSON")
    assert json.loads(shown["schema"]) == json.loads(agent_action_schema())
    assert run(capsys, data, "delete", "pay-value")[1] == "pay-value: versions 1 deleted\n"
    status, _, err = run(capsys, data, "delete", "pay-value")
    assert status == 1 and "40404" in err
    assert run(capsys, data, "delete", "pay-value", "--permanent")[0] == 0
    status, _, err = run(capsys, data, "get", "pay-value")
    assert status == 1 and "40401" in err
    status, _, err = run(capsys, data, "get", AGENT_ACTIONS_SUBJECT, "--version", "x")
    assert status == 1 and "42202" in err
    with engine.open(data) as e:  # what a server opened on it afterwards sees
        assert e.schemas.subjects() == [AGENT_ACTIONS_SUBJECT]


def test_the_shipped_agent_action_schema_holds_an_agent_action() -> None:
    schema = json.loads(agent_action_schema())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    action = {
        "action_id": "a-2", "type": "approval",
        "actor": {"kind": "human", "id": "ops", "principal": "User:ops"},
        "policy": {"policy_id": "spend", "version": "3", "verdict": "needs_approval"},
        "input_ref": {"topic": "tool-io", "partition": 0, "offset": 17, "sha256": "a" * 64},
        "correlation_id": "c-1", "causation_id": "a-1",
        "context_offsets": {"memory": {"0": {"offset": 41, "leader_epoch": 3}}},
        "timestamps": {"started_ms": 1, "finished_ms": 2},
    }  # fmt: skip
    assert validator.is_valid(action)
    for broken in (
        {**action, "type": "shrug"},
        {k: v for k, v in action.items() if k != "correlation_id"},
        {**action, "context_offsets": {"memory": {"zero": {"offset": 1}}}},
        {**action, "context_offsets": {"memory": {"0": {"offset": -1}}}},
    ):
        assert not validator.is_valid(broken)
