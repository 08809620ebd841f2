"""``tidelog serve`` with a ``[mirror]`` section mirrors its own topics to
a Kafka cluster (librdkafka's mock cluster) in the background, and stops it
cleanly with the server; without the section, serving never imports
confluent-kafka."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.cli.main import main
from tests.logging_state import logging_kept
from tests.mirror.conftest import MockCluster, read_topic
from tests.mirror.sides import assert_mirrored_exactly, create, produce_plain
from tests.server.conftest import GROUP_SERVER_CONFIG, ServerProcess


def test_serve_mirrors_matching_topics_in_the_background(
    tmp_path: Path, mock_cluster: MockCluster
) -> None:
    config = tmp_path / "tidelog.toml"
    config.write_text(
        GROUP_SERVER_CONFIG
        + f"""
[mirror]
to = "{mock_cluster.bootstrap}"
topics = "live\\\\..*"
topic_refresh_s = 0.5
checkpoint_interval_s = 1
"""
    )
    server = ServerProcess(tmp_path / "data", args=["--config", str(config)]).start()
    try:
        produce_plain(server.bootstrap, "other", 1, 10)
        # Created after the mirror started (it picks new topics up), with 4
        # partitions, as the mock cluster makes them on first use.
        create(server.bootstrap, "live.orders", 4)
        produce_plain(server.bootstrap, "live.orders", 4, 400)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            copied = read_topic(mock_cluster.bootstrap, "live.orders", 4)
            if sum(map(len, copied)) == 400:
                break
            time.sleep(0.3)
        assert_mirrored_exactly(server.bootstrap, mock_cluster.bootstrap, "live.orders", 4)
        assert server.stop() == 0, server.log()
    finally:
        server.kill()
    assert "mirroring live\\..* from 127.0.0.1:" in server.log()


def test_serve_without_a_mirror_does_not_import_confluent_kafka() -> None:
    check = (
        "import sys, engine.cli.main, engine.cli.serve;sys.exit('confluent_kafka' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", check], check=False, timeout=60).returncode == 0


def test_a_bad_mirror_section_is_refused_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "tidelog.toml"
    config.write_text('[mirror]\nto = "127.0.0.1:1"\ntopics = "("\n')
    with logging_kept():  # serve's filters on the root logger's handlers, pytest's for the session
        assert main(["serve", "--config", str(config), "--data-dir", str(tmp_path / "d")]) == 2
    assert "[mirror]: topics: not a regular expression" in caplog.text
