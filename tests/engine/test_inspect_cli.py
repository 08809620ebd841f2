"""``tidelog inspect wal|manifest|objects`` on a data directory whose engine
is serving, with a real S3 server (moto on loopback): the WAL shows the
records not yet uploaded, the manifest and objects show what the bucket
holds, nothing is written and no epoch is taken; a data directory that
does not exist is read as empty, not created."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

from engine import Engine, EngineConfig
from engine.cli.main import main
from s3stream import open_store
from s3stream.manifest import load_state
from tests.engine.conftest import QUIET_STORE
from tests.engine.helpers_records import batch
from wal.format import SEGMENT_HEADER_SIZE, SEGMENT_MADE_AHEAD, decode_segment_flags

CONFIG = EngineConfig(store=QUIET_STORE, cleaner_interval_s=3600)


def _inspect(part: str, data_dir: Path, url: str, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["inspect", part, "--data-dir", str(data_dir), "--object-store", url, *extra])
    return status, out.getvalue(), err.getvalue()


def _json(part: str, data_dir: Path, url: str) -> Any:
    status, out, err = _inspect(part, data_dir, url, "--json")
    assert status == 0, err
    return json.loads(out)


def _files(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def _wal_settled(data_dir: Path) -> None:
    """Waits until the WAL has made its next segment ahead: after the first
    upload trims it, it zero-fills a spare and renames it in the background
    (the engine's own writing, which a snapshot of the files must not
    catch halfway)."""
    wal = data_dir / "wal"
    deadline = time.monotonic() + 30
    while list(wal.glob("*.tmp")) or not any(map(_made_ahead, wal.glob("0*.wal"))):
        assert time.monotonic() < deadline, "the WAL's spare was not prepared in 30 s"
        time.sleep(0.02)


def _made_ahead(segment: Path) -> bool:
    with open(segment, "rb") as file:
        header = file.read(SEGMENT_HEADER_SIZE)
    return len(header) == SEGMENT_HEADER_SIZE and bool(
        decode_segment_flags(header) & SEGMENT_MADE_AHEAD
    )


def test_inspect_shows_uploaded_and_wal_only_records_of_a_serving_engine(
    tmp_path: Path, s3_url: str
) -> None:
    data_dir = tmp_path / "node"
    with Engine.open(data_dir, s3_url, CONFIG) as e:
        e.create_topic("audit", 1)
        for value in (b"a", b"b", b"c"):
            e.produce("audit", 0, batch([value]))
        assert e.flush(30)
        e.produce("audit", 0, batch([b"d", b"e"]))  # acknowledged: in the WAL only
        stream = e.catalog.state.topics["audit"].streams[0][0]
        store = open_store(s3_url)
        before = load_state(store)
        _wal_settled(data_dir)
        files = _files(data_dir)

        wal = _json("wal", data_dir, s3_url)
        manifest = _json("manifest", data_dir, s3_url)
        objects = _json("objects", data_dir, s3_url)

        after = load_state(store)
        assert (after.seq, after.epoch) == (before.seq, before.epoch)  # nothing fenced
        assert _files(data_dir) == files  # nothing written

    row = next(r for r in wal["streams"] if r["stream"] == stream)
    assert row["name"] == "audit-0"
    assert row["uploaded_end_offset"] == 3
    assert row["wal_end_offset"] == 5
    assert row["pending_records"] == 2
    assert row["pending_bytes"] == len(batch([b"d", b"e"]))
    assert wal["segments"]
    assert all(0 < s["used_bytes"] <= s["file_bytes"] for s in wal["segments"])
    assert sum(s["entries"] for s in wal["segments"]) >= sum(r["entries"] for r in wal["streams"])

    assert manifest["epoch"] == before.epoch
    assert manifest["version"] == before.seq
    held = next(s for s in manifest["streams"] if s["stream"] == stream)
    assert held["name"] == "audit-0"
    assert (held["start_offset"], held["end_offset"]) == (0, 3)
    assert [r[:2] for r in held["ranges"]] == [
        [start, end] for start, end, _ in before.ranges[stream].entries
    ]

    listed = {info.key: info for info in store.list("objects/")}
    assert {o["key"] for o in objects if o["in_manifest"]} == {
        m.key for m in before.objects.values()
    }
    for found in objects:
        assert found["in_store"] and found["size"] == listed[found["key"]].size
        assert found["version"] == listed[found["key"]].version
    audit = sorted(
        (r["start_offset"], r["end_offset"])
        for o in objects
        for r in o["ranges"]
        if r["name"] == "audit-0"
    )
    assert audit[0][0] == 0 and audit[-1][1] == 3
    assert all(a[1] == b[0] for a, b in itertools.pairwise(audit))

    # Closed, the engine uploaded the rest: nothing is pending any more.
    after_close = _json("wal", data_dir, s3_url)
    assert all(r["pending_records"] == 0 for r in after_close["streams"])
    store.close()


def test_inspect_objects_names_an_object_the_manifest_does_not(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    with Engine.open(data_dir, config=CONFIG) as e:
        e.create_topic("audit", 1)
        e.produce("audit", 0, batch([b"a"]))
    url = "file://" + str(data_dir / "objects")
    store = open_store(url)
    store.put("objects/left-behind", b"x" * 10)
    store.close()
    objects = _json("objects", data_dir, url)
    stray = [o for o in objects if not o["in_manifest"]]
    assert [(o["key"], o["size"]) for o in stray] == [("objects/left-behind", 10)]
    # The default store is DATA_DIR/objects, as tidelog serve chooses it.
    status, out, _ = _inspect("objects", data_dir, url)
    assert status == 0
    lines = [line.split("\t") for line in out.splitlines()]  # a pipe: tab-separated
    assert lines[-1][:3] == ["objects/left-behind", "-", "10"]


def test_inspect_of_a_missing_data_dir_is_empty_and_creates_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "absent"
    url = "file://" + str(data_dir / "objects")
    assert _json("wal", data_dir, url) == {"segments": [], "streams": []}
    assert _json("objects", data_dir, url) == []
    assert _json("manifest", data_dir, url)["streams"] == []
    assert not os.path.exists(data_dir)


def test_inspect_help_has_an_example() -> None:
    for part in ((), ("wal",), ("manifest",), ("objects",)):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main(["inspect", *part, "--help"])
        assert "example:\n  tidelog inspect" in out.getvalue()
