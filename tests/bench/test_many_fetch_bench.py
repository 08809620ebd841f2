"""bench/many_fetch_bench.py's ``records`` case (and fetch_instructions.py,
which sends the same Fetches) measures what it names: every Fetch of it
reads each partition's record from the log cache, none is answered by the
read of the Fetch before it (shared_reads.py keeps up to 1,024 reads, so
at 1,000 partitions a repeated Fetch would read nothing)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

import engine
from tests.bench.run import load_bench
from tests.server.in_process import InProcessServer

PARTITIONS = 20
FETCHES = 4

bench = load_bench("many_fetch_bench.py", "many_fetch_bench")


def test_every_records_fetch_reads_each_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as opened:
        opened.create_topic(bench.TOPIC, PARTITIONS)
        with opened.producer() as producer:
            for sent in [producer.send(bench.TOPIC, b"r", partition=p) for p in range(PARTITIONS)]:
                sent.result(30)
        reads: list[int] = []
        fetch_hot = opened.store.fetch_hot

        def counted(stream_id: int, offset: int, max_bytes: int = 1 << 20) -> Any:
            reads.append(offset)
            return fetch_hot(stream_id, offset, max_bytes)

        monkeypatch.setattr(opened.store, "fetch_hot", counted)
        server = InProcessServer(opened)
        try:
            host, port = server.bootstrap.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=30) as sock:
                for n in range(FETCHES):
                    sock.sendall(bench.records_fetch(n + 1, PARTITIONS, n))
                    bench._receive(sock)
                    assert len(reads) == PARTITIONS * (n + 1), f"fetch {n} read too little"
            assert server.server.state.shared_reads.hits == 0
        finally:
            server.stop()
