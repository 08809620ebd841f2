"""The data directory holds record data, so it is its owner's only: the
directories 0700 and the files 0600 (WAL segments, locks, the local object
store's objects and the catalog in them), whatever the umask lets through."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import engine
from tests.engine.helpers_records import batch


def test_a_new_data_directory_is_its_owners_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    previous = os.umask(0)  # the most permissive: modes must be set, not inherited
    try:
        opened = engine.open(data_dir)
        try:
            opened.create_topic("private", 2)
            for partition in (0, 1):
                opened.produce("private", partition, batch([b"secret record"]))
        finally:
            opened.close()
    finally:
        os.umask(previous)
    directories = [data_dir, *(p for p in data_dir.rglob("*") if p.is_dir())]
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert {"wal", "objects"} <= {p.name for p in directories}
    assert any(p.parent.name == "wal" for p in files), "no WAL file was written"
    assert any("objects" in p.parts for p in files), "no object was written"
    wrong = {
        str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in directories
        if stat.S_IMODE(p.stat().st_mode) != 0o700
    } | {
        str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in files
        if stat.S_IMODE(p.stat().st_mode) != 0o600
    }
    assert not wrong
