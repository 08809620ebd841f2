"""An object store that refuses a read (denied access on a GET, as a bucket
whose policy lost the read grant does) is never said to have refused a
write: opening the engine fails with the store's own error, which the
refusal described to the operator says was met while opening (with what to
check), and a verification that cannot read an object is not told that a
change it never asked for was not made. Only the writes an admin change
makes are StoreWriteFailed (tests/faults/test_store_write_faults.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import engine
from engine.errors import StoreWriteFailed
from engine.refusal import REFUSALS, describe
from s3stream.store import LocalStore, ObjectStoreError
from tests.engine.helpers_records import batch
from tests.faults.test_store_write_faults import QUIET
from tests.s3stream.faults import FaultyStore

ADVICE = "Check its URL, endpoint and credentials"


def _stored(root: Path) -> LocalStore:
    inner = LocalStore(root / "objects")
    with engine.open(root / "writer", inner, QUIET) as e:
        e.create_topic("orders", 1)
        e.produce("orders", 0, batch([b"a", b"b"]))
        assert e.flush(30)
    return inner


def _refusing_reads(inner: LocalStore, prefix: str) -> FaultyStore:
    faulty = FaultyStore(inner)
    faulty.fail("get", prefix=prefix)
    faulty.transient = False
    faulty.misconfigured = True
    return faulty


def test_an_open_whose_reads_are_refused_fails_with_the_stores_error(tmp_path: Path) -> None:
    faulty = _refusing_reads(_stored(tmp_path), "manifest/")
    with pytest.raises(REFUSALS) as refused:
        engine.open(tmp_path / "reader", faulty, QUIET)
    assert isinstance(refused.value, ObjectStoreError)
    assert not isinstance(refused.value, StoreWriteFailed)
    described = describe(refused.value, "/data")
    assert described.startswith("the object store failed while opening /data: get ")
    assert ADVICE in described
    assert "did not take a write" not in described


def test_a_verification_whose_reads_are_refused_is_not_a_failed_write(tmp_path: Path) -> None:
    inner = _stored(tmp_path)
    faulty = FaultyStore(inner)
    with engine.open(tmp_path / "reader", faulty, QUIET) as e:
        faulty.fail("get", prefix="objects/")
        faulty.transient = False
        faulty.misconfigured = True
        with pytest.raises(ObjectStoreError) as refused:
            e.verify("orders", 0)
        assert not isinstance(refused.value, StoreWriteFailed)
        faulty.heal()
        assert e.fetch("orders", 0, 0).high_watermark == 2
