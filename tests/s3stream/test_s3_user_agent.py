"""An S3 store's requests name tidelog and its version in their
User-Agent, so an object store's access log tells them from other
clients': on botocore's sessions they named only ``Botocore/VERSION``
(boto3's had named ``Boto3/VERSION``). Read from the requests moto's
server on loopback recorded."""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path

import pytest
from moto.moto_api import recorder

from s3stream.store import S3Store


@pytest.mark.skipif(
    bool(os.environ.get("TIDELOG_TEST_S3_ENDPOINT")),
    reason="the requests' headers are read from moto's recording",
)
def test_a_stores_requests_name_tidelog_and_its_version(
    s3_store: S3Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # moto's server runs in this process: its recorder writes here, not in the cwd.
    recording = tmp_path / "recording"
    monkeypatch.setattr(recorder, "_location", str(recording))
    recorder.start_recording()
    try:
        s3_store.put("named", b"who sent this")
    finally:
        recorder.stop_recording()
    requests = [json.loads(line) for line in recording.read_text().splitlines()]
    puts = [request for request in requests if request["method"] == "PUT"]
    assert len(puts) == 1
    user_agent = puts[0]["headers"]["User-Agent"]
    version = importlib.metadata.version("tidelog")
    assert user_agent.split()[0] == f"tidelog/{version}"
    assert "Botocore/" not in user_agent
