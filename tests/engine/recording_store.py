"""An object store that records the manifest objects written to it, so
tests can count manifest commits and the bytes they cost."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from native.buffers import BytesLike
from s3stream import StreamStoreConfig
from s3stream.manifest_records import LOG_PREFIX, decode_record
from s3stream.store.local import LocalStore
from tests.s3stream.faults import FaultyStore

NO_UPLOADS = StreamStoreConfig(
    upload_interval_s=3600, upload_bytes=1 << 30, compaction_interval_s=3600
)
"""Uploads commit to the manifest too: kept out of the way of the counts."""


class RecordingStore(FaultyStore):
    """Records every manifest object written: (key, bytes)."""

    def __init__(self, root: Path) -> None:
        super().__init__(LocalStore(root))
        self.manifest_puts: list[tuple[str, bytes]] = []
        self._puts_lock = threading.Lock()

    def _record(self, key: str, data: BytesLike) -> None:
        if key.startswith("manifest/"):
            with self._puts_lock:
                self.manifest_puts.append((key, bytes(data)))

    def put(self, key: str, data: BytesLike) -> str:
        self._record(key, data)
        return super().put(key, data)

    def put_if_absent(self, key: str, data: BytesLike) -> str:
        self._record(key, data)
        return super().put_if_absent(key, data)

    def deltas_since(self, mark: int) -> list[list[Any]]:
        """The operations of each manifest delta written since ``mark``."""
        return [
            decode_record(key, data)["ops"]
            for key, data in self.manifest_puts[mark:]
            if key.startswith(LOG_PREFIX)
        ]

    def bytes_since(self, mark: int) -> int:
        return sum(len(data) for _, data in self.manifest_puts[mark:])
