"""The one way the stream store's parts change the manifest: commits made
one at a time, and the fence check; either learning that another writer
has taken over stops the whole store."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from s3stream.errors import Fenced
from s3stream.manifest import Manifest
from s3stream.manifest_state import ManifestState, Op
from s3stream.store import ObjectStoreError

log = logging.getLogger("tidelog.s3stream")


class ManifestWriter:
    def __init__(self, manifest: Manifest, on_fenced: Callable[[Fenced], None]) -> None:
        self.manifest = manifest
        self.serial = threading.Lock()
        """Held around reading the manifest's state and committing what was
        decided from it, so no other commit slips in between."""
        self._on_fenced = on_fenced

    def commit(self, ops: list[Op]) -> ManifestState:
        """Commits ``ops`` in one version (the caller holds ``serial``)."""
        try:
            return self.manifest.commit(ops)
        except Fenced as error:
            self._on_fenced(error)
            raise

    def check_fence(self, *, certain: bool = False) -> None:
        """One small request to the manifest: raises Fenced (and stops the
        store) if another writer has taken over since our last commit.
        With ``certain``, a store error that leaves it unknown is raised;
        else it is logged, and the next check, or commit, tries again."""
        try:
            self.manifest.check_fenced()
        except Fenced as error:
            self._on_fenced(error)
            raise
        except ObjectStoreError as error:
            if certain:
                raise
            log.debug("fence check failed: %s", error)
