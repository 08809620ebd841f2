"""Object stores that misbehave, as fixtures.

``s3_fault_proxy`` is a started :class:`S3FaultProxy` in front of moto's
server (the session's, from tests/s3stream/conftest.py); ``faulty_endpoint``
names the same bucket through it, so ``faulty_endpoint.store(prefix)`` or
``faulty_endpoint.store_url(prefix)`` reach moto with faults on the way.

``s3rver_endpoint`` is the npm package s3rver (tests/clients/node), an
S3-compatible server that accepts conditional writes and does not enforce
them, in a child process on a loopback port.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.s3_proxy import S3FaultProxy
from tests.s3stream.conftest import S3Endpoint, s3_endpoint  # noqa: F401

FULL = os.environ.get("TIDELOG_FAULTS") == "full"
"""``TIDELOG_FAULTS=full`` runs the long campaigns; the default is a short run."""


@pytest.fixture
def s3_fault_proxy(s3_endpoint: S3Endpoint) -> Iterator[S3FaultProxy]:  # noqa: F811
    seed = int(os.environ.get("TIDELOG_FAULTS_SEED", "0"))
    with S3FaultProxy(s3_endpoint.url, seed=seed) as proxy:
        yield proxy


@pytest.fixture
def faulty_endpoint(s3_endpoint: S3Endpoint, s3_fault_proxy: S3FaultProxy) -> S3Endpoint:  # noqa: F811
    return S3Endpoint(
        s3_fault_proxy.url,
        s3_endpoint.bucket,
        s3_endpoint.region,
        s3_endpoint.access_key_id,
        s3_endpoint.secret_access_key,
    )


NODE_CLIENTS = Path(__file__).resolve().parent.parent / "clients" / "node"
S3RVER_BUCKET = "tidelog-s3rver"
_S3RVER_START_S = 30.0


@pytest.fixture
def s3rver_endpoint(tmp_path: Path) -> Iterator[S3Endpoint]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (tests/run.sh installs the node test clients)")
    log_path = tmp_path / "s3rver.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [node, str(NODE_CLIENTS / "s3rver_server.js"), str(tmp_path / "s3rver"), S3RVER_BUCKET],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        port = _wait_for_port(process, log_path)
        yield S3Endpoint(f"http://127.0.0.1:{port}", S3RVER_BUCKET, "us-east-1", "S3RVER", "S3RVER")
    finally:
        assert process.stdin is not None
        process.stdin.close()  # the server stops when its stdin closes
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_for_port(process: subprocess.Popen[bytes], log_path: Path) -> int:
    deadline = time.monotonic() + _S3RVER_START_S
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith("listening on "):
                return int(line.split()[-1])
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait(timeout=10)
    raise RuntimeError(f"s3rver did not start:\n{log_path.read_text(errors='replace')}")
