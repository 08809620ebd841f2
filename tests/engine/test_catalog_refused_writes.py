"""A catalog record the store refuses is in force nowhere: not in the
state the engine reads credentials, ACLs and topic configs from, nor in a
snapshot written later; and a record the state cannot take is refused
before it is written; and an alteration of several topics names each
once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.catalog import Catalog, CatalogState
from engine.credentials import new_credential
from engine.engine import Engine
from engine.errors import EngineError, ResourceNamedTwice
from s3stream import S3StreamError

SHA_256 = "SCRAM-SHA-256"


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[Engine]:
    running = engine.open(tmp_path / "node")
    try:
        yield running
    finally:
        running.close()


def fail_next_store_write(monkeypatch: pytest.MonkeyPatch, catalog: Catalog) -> None:
    """The store refuses the catalog's next write, as an object store that
    is down would; the ones after it are written."""
    submit = catalog.store.submit
    failures = iter([S3StreamError("the object store is down")])

    def submit_failing_once(*args: Any, **kwargs: Any) -> Any:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return submit(*args, **kwargs)

    monkeypatch.setattr(catalog.store, "submit", submit_failing_once)


def test_credentials_the_store_refused_do_not_authenticate(
    opened: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_next_store_write(monkeypatch, opened.catalog)
    with pytest.raises(EngineError):
        opened.credentials.alter_many(
            [(user, SHA_256, new_credential(SHA_256, "secret")) for user in ("alice", "bob")]
        )
    assert opened.credentials.get("alice", SHA_256) is None
    assert opened.catalog.state.credentials == {}


def test_configs_the_store_refused_are_not_in_a_later_snapshot(
    opened: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    opened.create_topic("first", 1)
    opened.create_topic("second", 1)
    fail_next_store_write(monkeypatch, opened.catalog)
    with pytest.raises(EngineError):
        opened.alter_configs_many(
            [("first", {"retention.ms": "1000"}, True), ("second", {"retention.ms": "2000"}, True)]
        )
    assert opened.catalog.state.topics["first"].configs == {}
    assert opened.catalog.state.topics["second"].configs == {}
    opened.catalog._snapshot()
    opened.close()
    reopened = engine.open(tmp_path / "node")
    try:
        assert reopened.topic_config("first").overrides == {}
        assert reopened.topic_config("second").overrides == {}
    finally:
        reopened.close()


def test_a_record_naming_a_topic_not_there_is_refused_unwritten(opened: Engine) -> None:
    catalog = opened.catalog
    opened.create_topic("first", 1)
    end = catalog.store.end_offset(catalog.stream_id)
    hostile = [
        "configs_many",
        [["alter_configs", "first", {"retention.ms": "1"}], ["alter_configs", "gone", {}]],
    ]
    with pytest.raises(ValueError, match="'gone'"):
        catalog.append(hostile)
    with pytest.raises(ValueError, match="holds 'configs_many'"):
        catalog.append(["configs_many", [["alter_configs", "first", {}], hostile]])
    assert catalog.store.end_offset(catalog.stream_id) == end
    assert catalog.state.topics["first"].configs == {}


@pytest.mark.parametrize(
    "held",
    [5, None, [5], [[]], [["configs_many", []]], [["snapshot", {}]]],
    ids=["number", "nil", "a number inside", "an empty record", "nested", "a snapshot"],
)
def test_a_damaged_configs_many_is_refused_by_name_at_open(held: Any) -> None:
    """A bucket writer's malformed ``configs_many`` stops the open with an
    error that names the record, not a TypeError from deep in the reader."""
    with pytest.raises(ValueError, match="a configs_many record holds"):
        CatalogState().apply(["configs_many", held])


def test_alter_configs_many_refuses_a_topic_named_twice(opened: Engine) -> None:
    """Each alteration is checked against the configs before the request;
    a topic named twice would have its second (here a replacement of every
    override) checked and recorded as if the first were not there."""
    opened.create_topic("first", 1)
    with pytest.raises(ResourceNamedTwice, match="'first'"):
        opened.alter_configs_many(
            [
                ("first", {"tidelog.provenance": "stamp"}, True),
                ("first", {"retention.ms": "5"}, False),
            ]
        )
    assert opened.topic_config("first").overrides == {}
    assert opened.catalog.state.governance == []
