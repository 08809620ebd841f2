"""The object store's tidelog.stalls lines (docs/operations.md): every
write says its size, what it wrote (by its key's prefix, never the bucket
or the store's address) and its MiB/s; a read, list or delete is logged
once it took ``SLOW_REQUEST_S`` or longer; each line's first "N ms" is
its duration, which bench/_stalls.py reads back."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from s3stream.manifest_records import checkpoint_key, delta_key
from s3stream.objects import ObjectKind
from s3stream.store import LocalStore, ObjectNotFound, PreconditionFailed, stall_lines
from s3stream.store.metered import MeteredStore
from s3stream.uploader import object_key

MiB = 1024 * 1024
_DURATION = re.compile(r"^.*?([\d.]+) ms")
"""As bench/_stalls.py finds a line's duration: its first "N ms"."""


def _stalls(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tidelog.stalls"]


def test_each_write_says_its_size_kind_and_rate_and_never_the_store_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "secret-bucket-name"
    store = MeteredStore(LocalStore(root))
    data_key = object_key(3, 7, ObjectKind.STREAM_SET)
    with caplog.at_level(logging.DEBUG, logger="tidelog.stalls"):
        store.put(data_key, [b"a" * MiB, memoryview(b"b" * MiB), bytearray(MiB // 2)])
        store.put_if_absent(delta_key(5), b"d" * 2048)
        store.put(checkpoint_key(64), b"c" * (MiB // 4))
        with pytest.raises(PreconditionFailed):
            store.put_if_absent(delta_key(5), b"again")
    lines = _stalls(caplog)
    assert len(lines) == 4
    written = re.compile(
        r"^object store (put|put_if_absent) of ([\d.]+ [KM]iB) \(([a-z -]+)\) "
        r"took ([\d.]+) ms, ([\d.]+|inf) MiB/s$"
    )
    parsed = [written.match(line) for line in lines[:3]]
    assert all(parsed), lines
    assert [(m[1], m[2], m[3]) for m in parsed if m] == [
        ("put", "2.50 MiB", "data object"),
        ("put_if_absent", "2.0 KiB", "manifest delta"),
        ("put", "256.0 KiB", "manifest checkpoint"),
    ]
    for match in parsed:
        assert match is not None
        ms, rate = float(match[4]), float(match[5])
        number, unit = match[2].split()
        mib = float(number) / (1 if unit == "MiB" else 1024)
        # Both from one elapsed time, each rounded to a tenth in the line.
        slowest = mib / ((ms + 0.05) / 1000) - 0.05
        fastest = mib / ((ms - 0.05) / 1000) + 0.05 if ms > 0.05 else float("inf")
        assert slowest <= rate <= fastest
    assert lines[3].startswith("object store put_if_absent of a manifest delta took ")
    assert lines[3].endswith(" ms (PreconditionFailed)")
    for line in lines:
        assert str(root) not in line and "secret-bucket-name" not in line
        duration = _DURATION.match(line)
        assert duration is not None and f"took {duration[1]} ms" in line


def test_reads_lists_and_deletes_are_logged_once_slow(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MeteredStore(LocalStore(tmp_path / "store"))
    key = object_key(1, 2, ObjectKind.STREAM)
    store.put(key, b"x" * MiB)
    monkeypatch.setattr(stall_lines, "SLOW_REQUEST_S", float("inf"))
    with caplog.at_level(logging.DEBUG, logger="tidelog.stalls"):
        store.get(key, 0, 1000)
        store.list("objects/")
    assert _stalls(caplog) == []  # fast enough: nothing

    monkeypatch.setattr(stall_lines, "SLOW_REQUEST_S", 0.0)  # everything is slow enough
    with caplog.at_level(logging.DEBUG, logger="tidelog.stalls"):
        store.get(key, 0, MiB // 2)
        store.get_versioned(key)
        store.list("objects/")
        store.delete(key)
        with pytest.raises(ObjectNotFound):
            store.get(key)
    lines = _stalls(caplog)
    assert [re.sub(r"took [\d.]+ ms, [\d.inf]+ MiB/s", "took T", line) for line in lines[:2]] == [
        "object store get of 512.0 KiB (data object) took T",
        "object store get_versioned of 1.00 MiB (data object) took T",
    ]
    assert re.fullmatch(r"object store list of data object keys took [\d.]+ ms", lines[2])
    assert re.fullmatch(r"object store delete of a data object took [\d.]+ ms", lines[3])
    assert re.fullmatch(
        r"object store get of a data object took [\d.]+ ms \(ObjectNotFound\)", lines[4]
    )
