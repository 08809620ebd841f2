"""Valid but hostile sequences of catalog changes through the embedded
API, across the catalog's snapshots (taken every few records here): topics
created, grown, forked, configured and deleted; client quotas set and
removed, several entities at once; ACLs added and removed; delegation
tokens created, renewed and expired. After each sequence, and at restarts
drawn into it, the catalog a restart loads is the one that was served."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import precondition, rule

import engine
from engine import catalog as catalog_module
from engine.acl_bindings import AclBinding
from engine.clock import ManualClock
from engine.delegation_tokens import DelegationTokenConfig
from engine.errors import EngineError
from engine.quota_entities import CLIENT_ID, USER
from tests.engine.conftest import FAST_STORE
from tests.engine.restart_machine import RestartMachine
from tests.long_runs import LONG, sized

TOPICS = ["a", "b", "c"]
QUOTA_KEYS = ["producer_byte_rate", "consumer_byte_rate", "request_percentage"]
NAMES = [None, "alice", "bob"]
PRINCIPALS = ["User:alice", "User:bob"]

entities = st.lists(
    st.tuples(st.sampled_from([USER, CLIENT_ID]), st.sampled_from(NAMES)),
    min_size=1,
    max_size=2,
    unique_by=lambda part: part[0],
).map(lambda parts: tuple(sorted(parts)))
changes = st.dictionaries(
    st.sampled_from(QUOTA_KEYS), st.one_of(st.none(), st.integers(1, 10**6).map(float)), max_size=3
)
acls = st.builds(
    AclBinding,
    st.just(2),
    st.sampled_from(TOPICS),
    st.just(3),
    st.sampled_from(PRINCIPALS),
    st.just("*"),
    st.sampled_from([3, 4]),
    st.just(3),
)


def _open(directory: Path, clock: ManualClock) -> engine.Engine:
    config = engine.EngineConfig(
        store=FAST_STORE,
        cleaner_interval_s=3600.0,
        delegation_tokens=DelegationTokenConfig("the cluster's token secret"),
    )
    return engine.open(directory, None, config, clock=clock)


def _served(opened: engine.Engine) -> Any:
    """The catalog as its snapshot would hold it, and what the engine
    serves of it, in a form two engines compare by."""
    state = opened.catalog.state.to_wire()
    topics: dict[str, Any] = {}
    for name in sorted(opened.list_topics()):
        described = opened.describe_topic(name)
        # A partition's leader epoch rises at every open, as at a takeover
        topics[name] = (
            described.topic_id,
            [(p.partition, p.log_start_offset, p.high_watermark) for p in described.partitions],
            [(c.name, c.value, c.source) for c in described.configs],
        )
    tokens = sorted(
        (t.token_id, t.owner, t.renewers, t.expiry_timestamp_ms, t.max_timestamp_ms)
        for t in opened.delegation_tokens.tokens()
    )
    return state, topics, opened.client_quotas.entities(), tokens


class CatalogRestartMachine(RestartMachine):
    directory_prefix = "catalog-restart-"

    def __init__(self) -> None:
        super().__init__()
        self.digests: list[bytes] = []

    def open_engine(self, directory: Path, clock: ManualClock) -> engine.Engine:
        return _open(directory, clock)

    def served(self, opened: engine.Engine) -> Any:
        return _served(opened)

    @rule(name=st.sampled_from(TOPICS), partitions=st.integers(1, 3))
    def create_topic(self, name: str, partitions: int) -> None:
        with contextlib.suppress(EngineError):
            self.engine.create_topic(name, partitions)

    @rule(name=st.sampled_from(TOPICS), total=st.integers(1, 5))
    def grow(self, name: str, total: int) -> None:
        with contextlib.suppress(EngineError):
            self.engine.create_partitions(name, total)

    @rule(parent=st.sampled_from(TOPICS), name=st.sampled_from(TOPICS))
    def fork(self, parent: str, name: str) -> None:
        with contextlib.suppress(EngineError):
            self.engine.fork(parent, name=name)

    @rule(names=st.lists(st.sampled_from(TOPICS), min_size=1, max_size=3, unique=True))
    def delete_topics(self, names: list[str]) -> None:
        self.engine.delete_topics(names)

    @rule(
        name=st.sampled_from(TOPICS),
        retention=st.one_of(st.none(), st.integers(1000, 10**9).map(str)),
    )
    def alter_config(self, name: str, retention: str | None) -> None:
        with contextlib.suppress(EngineError):
            self.engine.alter_configs(name, {"retention.ms": retention})

    @rule(alterations=st.lists(st.tuples(entities, changes), min_size=1, max_size=3))
    def alter_quotas(self, alterations: list[tuple[Any, dict[str, float | None]]]) -> None:
        with contextlib.suppress(EngineError):
            self.engine.client_quotas.alter_many(alterations)

    @rule(bindings=st.lists(acls, min_size=1, max_size=3), add=st.booleans())
    def alter_acls(self, bindings: list[AclBinding], add: bool) -> None:
        if add:
            self.engine.catalog.add_acls(bindings)
        else:
            self.engine.catalog.remove_acls(bindings)

    @rule(owner=st.sampled_from(PRINCIPALS), renewers=st.lists(st.sampled_from(PRINCIPALS)))
    def create_token(self, owner: str, renewers: list[str]) -> None:
        _, digest = self.engine.delegation_tokens.create(owner, owner, renewers)
        self.digests.append(digest)

    @precondition(lambda self: self.digests)
    @rule(
        data=st.data(),
        principal=st.sampled_from(PRINCIPALS),
        period=st.integers(-1, 10**8),
        renew=st.booleans(),
    )
    def renew_or_expire(
        self, data: st.DataObject, principal: str, period: int, renew: bool
    ) -> None:
        digest = data.draw(st.sampled_from(self.digests))
        tokens = self.engine.delegation_tokens
        try:
            if renew:
                tokens.renew(principal, digest, period)
            else:
                tokens.expire(principal, digest, period)
        except EngineError:
            pass

    @rule(ms=st.integers(0, 10**8))
    def advance(self, ms: int) -> None:
        self.clock.advance(ms / 1000)

    @rule()
    def restart(self) -> None:
        self._check_restart()


CatalogRestartMachine.TestCase.settings = settings(
    max_examples=sized(5, 200), stateful_step_count=sized(12, 50), deadline=None
)


@pytest.mark.timeout(3600 if LONG else 300)
def test_catalog_restart_model(monkeypatch: Any) -> None:
    monkeypatch.setattr(catalog_module, "SNAPSHOT_EVERY", 3)
    CatalogRestartMachine.TestCase("runTest").runTest()
