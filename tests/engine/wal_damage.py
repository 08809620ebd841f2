"""A data directory whose WAL holds acknowledged records, some then damaged.

An engine in a child process acknowledges ``count`` records (uploads off, so
they live only in the WAL) and is killed with SIGKILL; the test then flips a
byte of one record's WAL bytes, as a failing disk would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.engine.helpers_records import child_env
from wal.survey import survey_segment

TOPIC = "memory"

_CHILD = """
import os, signal, sys
import engine
from s3stream import StreamStoreConfig
store = StreamStoreConfig(upload_interval_s=3600, upload_bytes=1 << 30, compaction_interval_s=3600)
e = engine.open(sys.argv[1], None, engine.EngineConfig(cleaner_interval_s=3600, store=store))
e.create_topic(sys.argv[2])
producer = e.producer()
for i in range(int(sys.argv[3])):
    producer.send(sys.argv[2], b"value-%04d" % i, partition=0).result(timeout=30)
print("acknowledged", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def value(index: int) -> bytes:
    return b"value-%04d" % index


def acknowledged_then_killed(data_dir: Path, count: int) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(data_dir), TOPIC, str(count)],
        env=child_env(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.stdout.strip() == b"acknowledged", result.stderr.decode()[-2000:]


def damage_record_holding(data_dir: Path, needle: bytes) -> tuple[Path, int]:
    """Flips a byte of ``needle`` in the WAL; returns the file and the offset
    of the WAL record holding it."""
    for path in sorted((data_dir / "wal").glob("0*.wal")):
        raw = bytearray(path.read_bytes())
        at = raw.find(needle)
        if at == -1:
            continue
        survey = survey_segment(str(path), int(path.name[:20]))
        span = next(s for s in survey.spans if s.offset <= at < s.end)
        raw[at + len(needle) - 1] ^= 0x01
        path.write_bytes(raw)
        return path, span.offset
    raise AssertionError(f"{needle!r} is not in the WAL")


def tree(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }
