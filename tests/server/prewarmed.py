"""A ``tidelog serve`` child for tests that kill the server and start it
again many times: the process of its next start is launched as soon as the
last one listens, and runs the interpreter's start and the server's imports
(the wire server's, boto3's for an S3 store) while the test goes on. A
start then hands it the command line and it runs ``tidelog serve`` as
``python -m engine serve`` would, the engine's open and recovery included;
what a restart waited on before it was those imports (0.6 to 0.7 s of a
0.85 s start on a quiet machine, every one of them paid again at each
restart of the same server)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

from tests.server.conftest import ServerProcess

_SERVE_WHEN_TOLD = """
import json, sys
import engine.cli.serve
import engine.server.server  # imported by serve while the engine opens
from engine.cli import main
if sys.argv[1:] == ["s3"]:
    import s3stream.store.s3  # boto3, imported by the open of an S3 store
told = sys.stdin.readline()
if told:  # else the test ended without this start
    raise SystemExit(main(json.loads(told)))
"""


class PrewarmedServer(ServerProcess):
    """A :class:`ServerProcess` whose every start but the first finds its
    process already started and imported. ``close`` ends the server and the
    process held for its next start."""

    _spare: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> PrewarmedServer:
        try:
            super().start(timeout)
        finally:
            # Also after a start that failed or was cut short on purpose (a
            # kill during recovery): the next start is as prewarmed.
            if self._spare is None:
                self._spare = self._launch_spare()
        return self

    def _launch(self, command: list[str]) -> subprocess.Popen[bytes]:
        assert command[:3] == [sys.executable, "-m", "engine"], command
        process = self._spare or self._launch_spare()
        self._spare = None
        assert process.stdin is not None
        # A spare that died is seen by start's poll, with its log.
        with contextlib.suppress(BrokenPipeError):
            process.stdin.write(json.dumps(command[3:]).encode() + b"\n")
            process.stdin.close()
        return process

    def _launch_spare(self) -> subprocess.Popen[bytes]:
        s3 = ["s3"] if (self.object_store or "").startswith("s3") else []
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-c", _SERVE_WHEN_TOLD, *s3],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
            )

    def close(self) -> None:
        """Kills the server, if it runs, and the process held for its next start."""
        self.kill()
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.kill()
            spare.wait()
            if spare.stdin is not None:
                spare.stdin.close()
