"""Fixtures for the engine's tests: engines on a temporary data directory,
with a local object store or a prefix of the session's S3 server (moto's on
loopback, see tests/s3stream/conftest.py)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import engine
from engine.clock import SYSTEM, Clock
from s3stream import ObjectStoreError, StreamStoreConfig
from tests.s3stream.conftest import S3Endpoint, s3_endpoint  # noqa: F401

FAST_STORE = StreamStoreConfig(
    upload_bytes=64 * 1024,
    upload_interval_s=0.05,
    block_bytes=4096,
    wal_segment_bytes=256 * 1024,
    compaction_interval_s=3600,
    small_object_bytes=1 << 20,
    garbage_grace_s=0,
)
"""Small, frequent uploads; compaction only when a test asks for it."""

QUIET_STORE = StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600)
"""Uploads only on flush or close: tests that need to know what is in the bucket."""

EngineFactory = Callable[..., engine.Engine]


@pytest.fixture
def s3_url(s3_endpoint: S3Endpoint) -> Iterator[str]:  # noqa: F811
    """An s3:// URL naming a fresh prefix of the test bucket (emptied after)."""
    prefix = f"engine-{uuid.uuid4().hex}"
    yield s3_endpoint.store_url(prefix)
    store = s3_endpoint.store(prefix)
    with contextlib.suppress(ObjectStoreError):
        # DeleteObjects, a thousand keys a request: a DELETE each cost a
        # test that left some 300 objects 3 s of its teardown.
        store.delete_many([info.key for info in store.list()])
    store.close()


@pytest.fixture
def engine_factory(tmp_path: Path) -> Iterator[EngineFactory]:
    """Opens engines (default: on ``tmp_path/"node"`` with its own local object
    store, FAST_STORE uploads, no background cleaner); closes them after the test.

    ``engine_factory(data_dir=None, object_store=None, config=None, clock=SYSTEM, **config_fields)``
    """
    opened: list[engine.Engine] = []

    def factory(
        data_dir: str | Path | None = None,
        object_store: str | None = None,
        config: engine.EngineConfig | None = None,
        clock: Clock = SYSTEM,
        **fields: object,
    ) -> engine.Engine:
        if config is None:
            options: dict[str, object] = {"store": FAST_STORE, "cleaner_interval_s": 3600.0}
            options.update(fields)
            config = engine.EngineConfig(**options)  # type: ignore[arg-type]
        directory = data_dir or tmp_path / "node"
        opened_engine = engine.open(directory, object_store, config, clock=clock)
        opened.append(opened_engine)
        return opened_engine

    yield factory
    for opened_engine in reversed(opened):
        opened_engine.close()
