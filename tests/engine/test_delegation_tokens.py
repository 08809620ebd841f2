"""Delegation tokens in the embedded API (engine/delegation_tokens.py), as
Kafka's DelegationTokenControlManager keeps them: lifetimes and their caps,
renewal and expiry by the owner or a renewer, the errors in Kafka's order,
the SCRAM credentials a token's HMAC derives, the sweep of expired tokens,
and the catalog keeping them across a restart, a snapshot and a failed
write (never their HMACs)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

import engine
from engine import catalog as catalog_module
from engine import delegation_tokens as delegation_tokens_module
from engine.catalog import read_records
from engine.cli.main import main
from engine.clock import ManualClock
from engine.credentials import password_matches
from engine.delegation_tokens import (
    DEFAULT_EXPIRY_TIME_MS,
    DEFAULT_MAX_LIFETIME_MS,
    DelegationTokenAuthDisabled,
    DelegationTokenConfig,
    DelegationTokenExpired,
    DelegationTokenNotFound,
    DelegationTokenOwnerMismatch,
    InvalidPrincipalType,
)
from engine.engine import Engine, EngineConfig
from engine.errors import EngineError
from engine.protocol.kafka_code import KafkaCode
from s3stream import S3StreamError
from tests.engine.test_catalog_write_failures import FAILURES

SECRET = "the cluster's token secret"
ALICE, BOB, CAROL = "User:alice", "User:bob", "User:carol"
HOUR = 3_600_000


def config(secret: str | None = SECRET, **settings: int) -> EngineConfig:
    return EngineConfig(delegation_tokens=DelegationTokenConfig(secret, **settings))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def opened(tmp_path: Path, clock: ManualClock) -> Iterator[Engine]:
    with engine.open(tmp_path / "node", config=config(), clock=clock) as running:
        yield running


def password(digest: bytes) -> bytes:
    return base64.b64encode(digest)


def test_a_token_lives_a_day_at_most_a_week_its_hmac_is_hmac_sha512_of_its_id(
    opened: Engine, clock: ManualClock
) -> None:
    info, digest = opened.delegation_tokens.create(ALICE, ALICE, [BOB])
    now = clock.time_ms()
    assert (info.owner, info.requester, info.renewers) == (ALICE, ALICE, (BOB,))
    assert info.issue_timestamp_ms == now
    assert info.expiry_timestamp_ms == now + DEFAULT_EXPIRY_TIME_MS == now + 24 * HOUR
    assert info.max_timestamp_ms == now + DEFAULT_MAX_LIFETIME_MS == now + 7 * 24 * HOUR
    assert digest == hmac.digest(SECRET.encode(), info.token_id.encode(), hashlib.sha512)
    assert opened.delegation_tokens.tokens() == [info]


def test_a_shorter_max_lifetime_asked_for_caps_the_expiry_too(
    opened: Engine, clock: ManualClock
) -> None:
    info, _ = opened.delegation_tokens.create(ALICE, ALICE, [], max_lifetime_ms=HOUR)
    assert info.max_timestamp_ms == info.expiry_timestamp_ms == clock.time_ms() + HOUR
    longer, _ = opened.delegation_tokens.create(ALICE, ALICE, [], max_lifetime_ms=30 * 24 * HOUR)
    assert longer.max_timestamp_ms == clock.time_ms() + DEFAULT_MAX_LIFETIME_MS


def test_a_renewer_that_is_not_a_user_is_refused_and_nothing_is_written(opened: Engine) -> None:
    with pytest.raises(InvalidPrincipalType) as refused:
        opened.delegation_tokens.create(ALICE, ALICE, [BOB, "Group:ops"])
    assert refused.value.code == KafkaCode.INVALID_PRINCIPAL_TYPE
    assert opened.catalog.state.delegation_tokens == {}


def test_without_a_secret_tokens_are_off(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node", config=config(None)) as opened:
        tokens = opened.delegation_tokens
        for attempt in (
            lambda: tokens.create(ALICE, ALICE, []),
            lambda: tokens.renew(ALICE, b"x" * 64),
            lambda: tokens.expire(ALICE, b"x" * 64, -1),
            tokens.tokens,
        ):
            with pytest.raises(DelegationTokenAuthDisabled) as refused:
                attempt()
            assert refused.value.code == KafkaCode.DELEGATION_TOKEN_AUTH_DISABLED


def test_renewal_by_the_owner_or_a_renewer_never_past_the_max_timestamp(
    opened: Engine, clock: ManualClock
) -> None:
    tokens = opened.delegation_tokens
    info, digest = tokens.create(ALICE, ALICE, [BOB], max_lifetime_ms=30 * HOUR)
    clock.advance(20 * HOUR / 1000)  # 20 hours: still live
    assert tokens.renew(BOB, digest, HOUR) == clock.time_ms() + HOUR
    assert tokens.renew(ALICE, digest) == info.max_timestamp_ms  # 24 h asked, 10 h left
    with pytest.raises(DelegationTokenOwnerMismatch):
        tokens.renew(CAROL, digest)
    [renewed] = tokens.tokens()
    assert renewed.expiry_timestamp_ms == info.max_timestamp_ms


def test_errors_come_in_kafkas_order_not_found_expired_then_owner(
    opened: Engine, clock: ManualClock
) -> None:
    tokens = opened.delegation_tokens
    _, digest = tokens.create(ALICE, ALICE, [], max_lifetime_ms=HOUR)
    with pytest.raises(DelegationTokenNotFound):
        tokens.renew(ALICE, bytes(64))
    clock.advance(HOUR / 1000 + 1)
    for attempt in (
        lambda: tokens.renew(CAROL, digest),  # expired comes before the owner's check
        lambda: tokens.expire(CAROL, digest, 0),
    ):
        with pytest.raises(DelegationTokenExpired) as refused:
            attempt()
        assert refused.value.code == KafkaCode.DELEGATION_TOKEN_EXPIRED
    assert tokens.tokens() == []
    assert tokens.login(tokens_id(opened), "SCRAM-SHA-256") is None


def tokens_id(opened: Engine) -> str:
    [token_id] = opened.catalog.state.delegation_tokens
    return token_id


def test_expire_with_a_negative_period_removes_the_token_else_moves_its_expiry(
    opened: Engine, clock: ManualClock
) -> None:
    tokens = opened.delegation_tokens
    first, first_digest = tokens.create(ALICE, ALICE, [BOB])
    _, second_digest = tokens.create(ALICE, ALICE, [])
    assert tokens.expire(BOB, first_digest, 60_000) == clock.time_ms() + 60_000
    assert tokens.expire(ALICE, second_digest, -1) == -1
    assert [t.token_id for t in tokens.tokens()] == [first.token_id]
    with pytest.raises(DelegationTokenNotFound):
        tokens.renew(ALICE, second_digest)
    with pytest.raises(DelegationTokenOwnerMismatch):
        tokens.expire(CAROL, first_digest, -1)


def test_a_login_checks_the_hmac_as_password_and_acts_as_the_owner(
    opened: Engine, clock: ManualClock
) -> None:
    tokens = opened.delegation_tokens
    info, digest = tokens.create(BOB, ALICE, [])
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        login = tokens.login(info.token_id, mechanism)
        assert login is not None
        assert login.owner == BOB
        assert login.expiry_timestamp_ms == info.expiry_timestamp_ms
        assert login.credential.iterations == 4096
        assert password_matches(login.credential, mechanism, password(digest))
        assert not password_matches(login.credential, mechanism, password(bytes(64)))
    assert tokens.login(info.token_id, "PLAIN") is None
    assert tokens.login("no-such-token", "SCRAM-SHA-512") is None
    clock.advance(DEFAULT_EXPIRY_TIME_MS / 1000 + 1)
    assert tokens.login(info.token_id, "SCRAM-SHA-512") is None


def test_the_catalog_never_holds_the_hmac(opened: Engine) -> None:
    _, digest = opened.delegation_tokens.create(ALICE, ALICE, [BOB])
    records = read_records(opened.store, opened.catalog.stream_id)
    written = b"".join(msgpack.packb(record, use_bin_type=True) for record in records)
    assert digest not in written
    assert password(digest) not in written
    assert SECRET.encode() not in written


def test_a_guessed_secret_costs_as_much_to_test_against_the_check_as_against_a_credential(
    opened: Engine,
) -> None:
    """Whoever reads the catalog (the bucket) may test guesses of the secret,
    which makes every token's HMAC, against what a token keeps: its
    credentials take a guess an HMAC and 4096 PBKDF2 iterations, and so
    does its secret check (not a single HMAC)."""
    info, _ = opened.delegation_tokens.create(ALICE, ALICE, [])
    kept = opened.catalog.state.delegation_tokens[info.token_id][7]
    label = b"tidelog delegation token secret"
    assert kept == hashlib.pbkdf2_hmac("sha256", SECRET.encode(), label, 4096)[:16]
    assert kept != hmac.digest(SECRET.encode(), label, "sha256")[:16]


def test_tokens_survive_a_restart_and_a_snapshot_and_another_secret_voids_them(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_module, "SNAPSHOT_EVERY", 4)
    with engine.open(tmp_path / "node", config=config(), clock=clock) as first:
        kept, digest = first.delegation_tokens.create(ALICE, ALICE, [BOB])
        for _ in range(6):  # past a snapshot: the tokens are in it
            first.delegation_tokens.renew(BOB, digest, HOUR)
        expiry = first.delegation_tokens.renew(ALICE, digest, 2 * HOUR)
        removed, removed_digest = first.delegation_tokens.create(ALICE, ALICE, [])
        first.delegation_tokens.expire(ALICE, removed_digest, -1)
        snapshots = [
            r for r in read_records(first.store, first.catalog.stream_id) if r[0] == "snapshot"
        ]
        assert snapshots
    with engine.open(tmp_path / "node", config=config(), clock=clock) as again:
        [info] = again.delegation_tokens.tokens()
        assert info.token_id == kept.token_id
        assert info.expiry_timestamp_ms == expiry
        assert again.delegation_tokens.hmac(info.token_id) == digest
        assert again.delegation_tokens.login(info.token_id, "SCRAM-SHA-512") is not None
        assert again.delegation_tokens.login(removed.token_id, "SCRAM-SHA-512") is None
    with engine.open(tmp_path / "node", config=config("another secret"), clock=clock) as other:
        assert other.delegation_tokens.tokens() == []
        assert other.delegation_tokens.login(kept.token_id, "SCRAM-SHA-512") is None
        with pytest.raises(DelegationTokenNotFound):
            other.delegation_tokens.renew(ALICE, digest)
        assert other.delegation_tokens.sweep() == []  # kept for the secret set back
    with engine.open(tmp_path / "node", config=config(), clock=clock) as back:
        assert [t.token_id for t in back.delegation_tokens.tokens()] == [kept.token_id]


def test_a_renewal_or_expiry_computes_one_hmac_however_many_tokens_are_kept(
    opened: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka finds a token by its HMAC in a map (DelegationTokenCache's
    tokenForHmac): a Renew or Expire, even of an HMAC no token has, costs
    no HMAC per token kept, once the tokens are known."""
    tokens = opened.delegation_tokens
    made = [tokens.create(ALICE, ALICE, [BOB]) for _ in range(40)]
    computed = []
    real = delegation_tokens_module.token_hmac

    def counted(secret_key: str, token_id: str) -> bytes:
        computed.append(token_id)
        return real(secret_key, token_id)

    monkeypatch.setattr(delegation_tokens_module, "token_hmac", counted)
    with pytest.raises(DelegationTokenNotFound):
        tokens.renew(ALICE, bytes(64))
    computed.clear()
    for _ in range(5):
        with pytest.raises(DelegationTokenNotFound):
            tokens.renew(ALICE, bytes(64))
        with pytest.raises(DelegationTokenNotFound):
            tokens.expire(ALICE, b"\x01" * 64, -1)
    assert computed == []
    info, digest = made[17]
    tokens.renew(BOB, digest, HOUR)
    assert computed == [info.token_id]  # the one found, its HMAC checked again
    computed.clear()
    other, other_digest = made[3]
    assert tokens.expire(ALICE, other_digest, -1) == -1  # after a change: still the one
    assert computed == [other.token_id]
    fresh, fresh_digest = tokens.create(ALICE, ALICE, [])
    computed.clear()
    tokens.renew(ALICE, fresh_digest, HOUR)  # a token made since: its HMAC only
    assert set(computed) == {fresh.token_id}
    with pytest.raises(DelegationTokenNotFound):
        tokens.renew(ALICE, other_digest)  # expired at once: gone


def test_the_sweep_removes_expired_tokens_for_good(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tidelog.engine")
    with engine.open(tmp_path / "node", config=config(), clock=clock) as opened:
        tokens = opened.delegation_tokens
        short, short_digest = tokens.create(ALICE, ALICE, [], max_lifetime_ms=HOUR)
        long, _ = tokens.create(ALICE, ALICE, [])
        assert tokens.sweep() == []
        clock.advance(HOUR / 1000 + 1)
        assert tokens.sweep() == [short.token_id]
        assert f"delegation token {short.token_id} of {ALICE} expired" in caplog.text
        assert password(short_digest).decode() not in caplog.text
        assert list(opened.catalog.state.delegation_tokens) == [long.token_id]
    with engine.open(tmp_path / "node", config=config(), clock=clock) as restarted:
        assert list(restarted.catalog.state.delegation_tokens) == [long.token_id]


def test_the_engine_sweeps_on_its_interval(tmp_path: Path, clock: ManualClock) -> None:
    settings = config(expiry_check_interval_ms=100)
    with engine.open(tmp_path / "node", config=settings, clock=clock) as opened:
        opened.delegation_tokens.create(ALICE, ALICE, [], max_lifetime_ms=HOUR)
        time.sleep(0.5)  # a few intervals: nothing expired yet
        assert len(opened.catalog.state.delegation_tokens) == 1
        clock.advance(HOUR / 1000 + 1)
        deadline = time.monotonic() + 30
        while opened.catalog.state.delegation_tokens and time.monotonic() < deadline:
            time.sleep(0.05)
        assert opened.catalog.state.delegation_tokens == {}


@pytest.mark.parametrize("failure", FAILURES)
def test_a_failed_write_leaves_no_token_now_nor_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    objects = f"file://{tmp_path / 'objects'}"
    first = engine.open(tmp_path / "data", objects, config())
    try:
        with monkeypatch.context() as faults:
            FAILURES[failure](faults, first)
            with pytest.raises((EngineError, S3StreamError)) as failed:
                first.delegation_tokens.create(ALICE, ALICE, [])
        if isinstance(failed.value, EngineError):
            assert failed.value.code == KafkaCode.KAFKA_STORAGE_ERROR
        assert first.catalog.state.delegation_tokens == {}
    finally:
        first.close()
    with engine.open(tmp_path / "data", objects, config()) as restarted:
        assert restarted.catalog.state.delegation_tokens == {}
        info, _ = restarted.delegation_tokens.create(ALICE, ALICE, [])
        assert restarted.delegation_tokens.tokens() == [info]


def test_the_config_never_shows_its_secret() -> None:
    assert SECRET not in repr(DelegationTokenConfig(SECRET))
    assert SECRET not in repr(config())
    with pytest.raises(ValueError, match=r"expiry_time_ms must be a 64-bit integer, 1 or more"):
        DelegationTokenConfig(SECRET, expiry_time_ms=0)


def test_tidelog_users_lists_tokens_without_their_hmacs_and_removes_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "node"
    with engine.open(data, config=config()) as opened:
        kept, kept_digest = opened.delegation_tokens.create(ALICE, ALICE, [BOB])
        revoked, _ = opened.delegation_tokens.create(BOB, ALICE, [])
    assert main(["users", "--data-dir", str(data), "tokens"]) == 0
    listed = capsys.readouterr().out
    lines = listed.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{kept.token_id}: owner User:alice, requested by User:alice,")
    assert "renewers User:bob" in lines[0]
    assert lines[1].startswith(f"{revoked.token_id}: owner User:bob, requested by User:alice,")
    assert base64.b64encode(kept_digest).decode() not in listed
    assert kept_digest.hex() not in listed
    assert main(["users", "--data-dir", str(data), "remove-token", revoked.token_id]) == 0
    assert main(["users", "--data-dir", str(data), "remove-token", revoked.token_id]) == 1
    assert "no delegation token" in capsys.readouterr().err
    with engine.open(data, config=config()) as reopened:
        assert [t.token_id for t in reopened.delegation_tokens.tokens()] == [kept.token_id]


def test_tidelog_users_lists_a_token_whose_max_timestamp_no_calendar_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """delegation.token.max.lifetime.ms takes any long, as Kafka's: a max
    timestamp past year 9999 is listed in ms since the epoch."""
    data = tmp_path / "node"
    with engine.open(data, config=config(max_lifetime_ms=2**63 - 1)) as opened:
        made, _ = opened.delegation_tokens.create(ALICE, ALICE, [])
    assert made.max_timestamp_ms == 2**63 - 1
    assert main(["users", "--data-dir", str(data), "tokens"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{made.token_id}: owner User:alice,")
    assert line.endswith(f"at most {2**63 - 1} ms since the epoch")
