"""store_errors: a stream-store error raised inside becomes the engine's
(Fenced, EngineClosed, StorageError), caused by the original; store_writes,
around an admin change's writes, makes an object store's own error
StoreWriteFailed too; anything else, and nothing, passes through as it is,
also across an await."""

from __future__ import annotations

import asyncio

import pytest

from engine.errors import EngineClosed, Fenced, StorageError, StoreWriteFailed
from engine.store_errors import CHECK_THE_STORE, store_errors, store_writes
from s3stream import Fenced as StoreFenced
from s3stream import S3StreamError, StoreClosed, StoreFailed
from tests.s3stream.faults import InjectedFault


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (StoreFenced("stream 3", 1, 2), Fenced),
        (StoreClosed(), EngineClosed),
        (S3StreamError("the disk is full"), StorageError),
    ],
)
def test_a_store_error_raised_inside_becomes_the_engine_error(
    raised: S3StreamError, expected: type[Exception]
) -> None:
    with pytest.raises(expected) as caught, store_errors():
        raise raised
    assert caught.value.__cause__ is raised


@pytest.mark.parametrize(("transient", "misconfigured"), [(True, False), (False, True)])
def test_an_object_store_error_becomes_a_failed_write(transient: bool, misconfigured: bool) -> None:
    """As a manifest commit raises it (denied access on its PUT): typed,
    transient or not as the store said, with the advice only when the store
    points at its address or credentials."""
    raised = InjectedFault("put", "manifest/log/00000000000000000004")
    raised.transient = transient
    raised.misconfigured = misconfigured
    with pytest.raises(StoreWriteFailed) as caught, store_writes():
        raise raised
    assert caught.value.__cause__ is raised
    assert caught.value.transient is transient
    assert caught.value.code == StorageError.code
    assert (CHECK_THE_STORE in str(caught.value)) is misconfigured
    assert "manifest/log/00000000000000000004" in str(caught.value)


def test_an_object_store_error_outside_a_write_is_the_stores_own() -> None:
    """Met by a read (an open's, a verification's), the store's error is
    not a refused write: it passes, for the caller to name it."""
    raised = InjectedFault("get", "manifest/log/00000000000000000001")
    with pytest.raises(InjectedFault) as caught, store_errors():
        raise raised
    assert caught.value is raised


@pytest.mark.parametrize("misconfigured", [False, True])
def test_a_store_failed_on_a_refused_write_keeps_its_advice(misconfigured: bool) -> None:
    """An upload's manifest commit refused for good stops the store: the
    StorageError says what to check when the refusal points at the store."""
    refusal = InjectedFault("put", "manifest/log/00000000000000000004")
    refusal.transient = False
    refusal.misconfigured = misconfigured
    raised = StoreFailed(refusal)
    with pytest.raises(StorageError) as caught, store_errors():
        raise raised
    assert caught.value.__cause__ is raised
    assert type(caught.value) is StorageError
    assert "manifest/log/00000000000000000004" in str(caught.value)
    assert (CHECK_THE_STORE in str(caught.value)) is misconfigured


def test_other_errors_and_results_pass_through() -> None:
    with pytest.raises(KeyError), store_errors():
        raise KeyError("not the store's")
    with store_errors():
        value = 5
    assert value == 5


def test_it_translates_across_an_await_and_can_be_nested() -> None:
    async def failing() -> None:
        await asyncio.sleep(0)
        raise StoreClosed

    async def main() -> None:
        with store_errors(), store_errors():
            await failing()

    with pytest.raises(EngineClosed):
        asyncio.run(main())
