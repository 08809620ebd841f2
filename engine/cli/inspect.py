"""``tidelog inspect wal|manifest|objects``: what a data directory and its
object store hold, offline and read-only.

Nothing is written and no epoch is taken (as ``tidelog verify``): the WAL's
segments are read as files, without its lock, and the manifest is read as
committed, so inspecting beside a serving engine never fences it (a
segment being written may show a shorter tail than it will have). Streams
are named by the catalog: as uploaded, then as the WAL goes on with it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import msgpack

from engine.cli import table
from engine.cli.help_format import HelpFormatter
from engine.cli.offline import add_data_options, data_dir, file_config, object_store_url
from engine.server.config import ConfigFileError
from engine.verify import read_uploaded_catalog
from s3stream import ObjectStore, ObjectStoreError, S3StreamError, open_store
from s3stream.manifest import load_state
from s3stream.manifest_state import ManifestState
from s3stream.store import redact_url
from s3stream.store.base import ObjectInfo
from s3stream.store.memory import MemoryStore
from s3stream.uploader import OBJECT_PREFIX
from s3stream.wal_entries import WAL_DATA, WAL_OWNED_DATA, split_entry
from wal.errors import WalError
from wal.format import segment_name
from wal.recovery import list_segments
from wal.segment import SegmentScan, scan_segment

CANNOT_RUN = 2
_FORMATTER = HelpFormatter
_DATA_TYPES = (WAL_DATA, WAL_OWNED_DATA)


class InspectError(Exception):
    """The data directory or object store cannot be read."""


def add_command(commands: Any) -> None:
    inspect = commands.add_parser(
        "inspect",
        help="what the WAL, the manifest and the objects hold (offline, read-only)",
        description=(
            "Show what a data directory's write-ahead log and its object store hold. "
            "Read-only and takes no epoch: safe beside a serving engine."
        ),
        epilog="example:\n  tidelog inspect wal --data-dir ./tidelog-data",
        formatter_class=_FORMATTER,
    )
    parts = inspect.add_subparsers(dest="part", metavar="PART", required=True)
    _part(
        parts,
        "wal",
        "WAL segments (sizes, records) and per stream the offsets the WAL holds and how many "
        "are not yet uploaded",
        "tidelog inspect wal --data-dir ./tidelog-data --json",
        _wal,
    )
    _part(
        parts,
        "manifest",
        "the committed manifest: version, epoch, owner, streams and their ranges",
        "tidelog inspect manifest --object-store 's3://bucket/prefix?endpoint=http://h:9000'",
        _manifest,
    )
    _part(
        parts,
        "objects",
        "the objects in the store: sizes, versions, the ranges each holds, and any the "
        "manifest does not name",
        "tidelog inspect objects --data-dir ./tidelog-data",
        _objects,
    )


def _part(parts: Any, name: str, help_text: str, example: str, show: Any) -> None:
    parser = parts.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog="example:\n  " + example,
        formatter_class=_FORMATTER,
    )
    add_data_options(parser)
    parser.add_argument(
        "--json", action="store_true", help="print JSON instead of a table (or tab-separated lines)"
    )
    parser.set_defaults(run=lambda args: _run(args, show))


def _run(args: argparse.Namespace, show: Any) -> int:
    try:
        file = file_config(args)
        args.data_dir = data_dir(args, file)
        with _opened(object_store_url(args, file)) as store:
            show(args, store)
    except (ConfigFileError, InspectError, OSError, ValueError, WalError) as error:
        print(f"tidelog inspect: {error}", file=sys.stderr)
        return CANNOT_RUN
    return 0


@contextmanager
def _opened(url: str) -> Iterator[ObjectStore]:
    """The store a URL names; a local directory that does not exist is read
    as an empty store rather than created."""
    parsed = urlparse(url)
    if parsed.scheme == "file" and not os.path.isdir(parsed.path):
        store: ObjectStore = MemoryStore()
    else:
        store = open_store(url)
    try:
        yield store
    except (S3StreamError, ObjectStoreError) as error:
        raise InspectError(f"{redact_url(url)}: {error}") from error
    finally:
        store.close()


@dataclass
class _StreamInWal:
    first_offset: int
    end_offset: int
    entries: int = 0
    bytes: int = 0
    pending_records: int = 0
    pending_bytes: int = 0


def _scans(data_dir: str) -> list[SegmentScan | tuple[int, str]]:
    """Each segment's scan, or (sequence, path) for one whose header is bad."""
    directory = os.path.join(data_dir, "wal")
    if not os.path.isdir(directory):
        return []
    sequences, _ = list_segments(directory, remove_leftovers=False)
    found: list[SegmentScan | tuple[int, str]] = []
    for sequence in sequences:
        path = os.path.join(directory, segment_name(sequence))
        scan = scan_segment(path, sequence)
        found.append(scan if scan is not None else (sequence, path))
    return found


def _names(store: ObjectStore, state: ManifestState, scans: list[Any]) -> dict[int, str]:
    """Stream id -> what it holds, from the catalog as uploaded and as the WAL
    goes on with it (the catalog is the engine's first stream)."""
    wal_streams = {e.stream_id for s in scans if isinstance(s, SegmentScan) for e in s.entries}
    known = set(state.streams) | wal_streams
    if not known:
        return {}
    catalog_id = min(known)
    catalog, damage = read_uploaded_catalog(store, state)
    if damage is not None:
        # Shown anyway: inspecting a damaged store is what inspect is for.
        print(
            f"tidelog inspect: {damage} at its start; streams are named from what "
            "could be read of it",
            file=sys.stderr,
        )
    meta = state.streams.get(catalog_id)
    uploaded_end = meta.end_offset if meta is not None else 0
    for scan in scans:
        if not isinstance(scan, SegmentScan):
            continue
        for entry in scan.entries:
            if entry.stream_id != catalog_id or entry.type not in _DATA_TYPES:
                continue
            if entry.start_offset < uploaded_end:
                continue
            _, payload = split_entry(entry.type, entry.payload)
            try:
                catalog.apply(msgpack.unpackb(payload, raw=False, strict_map_key=False))
            except (ValueError, TypeError, KeyError, IndexError, msgpack.UnpackException):
                break  # names are a courtesy: a record this cannot read ends them
            uploaded_end = entry.end_offset
    names = {catalog_id: "catalog"}
    for topic, described in catalog.topics.items():
        for partition, (data, state_stream) in enumerate(described.streams):
            names[data] = f"{topic}-{partition}"
            names[state_stream] = f"{topic}-{partition} (state)"
    names.update({stream_id: name for name, stream_id in catalog.internal.items()})
    return names


def _wal(args: argparse.Namespace, store: ObjectStore) -> None:
    scans = _scans(args.data_dir)
    state = load_state(store)
    names = _names(store, state, scans)
    segments: list[dict[str, Any]] = []
    streams: dict[int, _StreamInWal] = {}
    for scan in scans:
        if not isinstance(scan, SegmentScan):
            sequence, path = scan
            segments.append(
                {
                    "segment": sequence,
                    "path": path,
                    "file_bytes": os.path.getsize(path),
                    "used_bytes": 0,
                    "entries": 0,
                    "sealed": False,
                    "stop_reason": "the segment header is not valid",
                }
            )
            continue
        segments.append(
            {
                "segment": scan.sequence,
                "path": scan.path,
                "file_bytes": scan.file_size,
                "used_bytes": scan.valid_end,
                "entries": len(scan.entries),
                "sealed": scan.sealed,
                "stop_reason": scan.stop_reason or None,
            }
        )
        for entry in scan.entries:
            if entry.type not in _DATA_TYPES:
                continue
            size = len(split_entry(entry.type, entry.payload)[1])
            held = streams.setdefault(
                entry.stream_id, _StreamInWal(entry.start_offset, entry.end_offset)
            )
            held.first_offset = min(held.first_offset, entry.start_offset)
            held.end_offset = max(held.end_offset, entry.end_offset)
            held.entries += 1
            held.bytes += size
            meta = state.streams.get(entry.stream_id)
            uploaded = meta.end_offset if meta is not None else 0
            if entry.end_offset > uploaded:
                held.pending_records += entry.end_offset - max(entry.start_offset, uploaded)
                held.pending_bytes += size
    rows = [
        {
            "stream": stream_id,
            "name": names.get(stream_id),
            "wal_first_offset": held.first_offset,
            "wal_end_offset": held.end_offset,
            "uploaded_end_offset": (
                state.streams[stream_id].end_offset if stream_id in state.streams else 0
            ),
            "entries": held.entries,
            "bytes": held.bytes,
            "pending_records": held.pending_records,
            "pending_bytes": held.pending_bytes,
        }
        for stream_id, held in sorted(streams.items())
    ]
    if args.json:
        table.emit_object({"segments": segments, "streams": rows}, as_json=True)
        return
    table.emit(
        segments,
        ("segment", "file_bytes", "used_bytes", "entries", "sealed", "stop_reason"),
        as_json=False,
        title="WAL segments",
    )
    table.emit(
        rows,
        (
            "stream",
            "name",
            "wal_first_offset",
            "wal_end_offset",
            "uploaded_end_offset",
            "pending_records",
            "pending_bytes",
        ),
        as_json=False,
        title="streams in the WAL (pending: not yet uploaded)",
    )


def _manifest(args: argparse.Namespace, store: ObjectStore) -> None:
    state = load_state(store)
    names = _names(store, state, _scans(args.data_dir))
    streams: list[dict[str, Any]] = [
        {
            "stream": meta.stream_id,
            "name": names.get(meta.stream_id),
            "epoch": meta.epoch,
            "start_offset": meta.start_offset,
            "end_offset": meta.end_offset,
            "ranges": [list(r) for r in state.ranges[meta.stream_id].entries]
            if meta.stream_id in state.ranges
            else [],
        }
        for meta in sorted(state.streams.values(), key=lambda m: m.stream_id)
    ]
    summary = {
        "version": state.seq,
        "epoch": state.epoch,
        "owner": state.owner or None,
        "owner_since_epoch": state.owner_since,
        "next_stream_id": state.next_stream_id,
        "next_object_id": state.next_object_id,
        "objects": len(state.objects),
        "object_bytes": sum(o.size for o in state.objects.values()),
        "garbage": len(state.garbage),
    }
    if args.json:
        table.emit_object({**summary, "streams": streams}, as_json=True)
        return
    table.emit_object(summary, as_json=False)
    table.emit(
        [{**s, "ranges": len(s["ranges"])} for s in streams],
        ("stream", "name", "epoch", "start_offset", "end_offset", "ranges"),
        as_json=False,
        title="streams",
    )


def _objects(args: argparse.Namespace, store: ObjectStore) -> None:
    state = load_state(store)
    names = _names(store, state, _scans(args.data_dir))
    listed: dict[str, ObjectInfo] = {info.key: info for info in store.list(OBJECT_PREFIX)}
    rows: list[dict[str, Any]] = []
    for meta in sorted(state.objects.values(), key=lambda m: m.object_id):
        info = listed.pop(meta.key, None)
        rows.append(
            {
                "key": meta.key,
                "object_id": meta.object_id,
                "kind": meta.kind.name,
                "size": meta.size,
                "version": info.version if info is not None else None,
                "created_ms": meta.created_ms,
                "in_manifest": True,
                "in_store": info is not None,
                "ranges": [
                    {
                        "stream": r.stream_id,
                        "name": names.get(r.stream_id),
                        "start_offset": r.start_offset,
                        "end_offset": r.end_offset,
                        "bytes": r.size,
                    }
                    for r in meta.ranges
                ],
            }
        )
    for key, info in sorted(listed.items()):
        # In the bucket, not in the manifest: garbage awaiting deletion, or
        # an upload whose commit did not happen.
        rows.append(
            {
                "key": key,
                "object_id": None,
                "kind": None,
                "size": info.size,
                "version": info.version,
                "created_ms": None,
                "in_manifest": False,
                "in_store": True,
                "ranges": [],
            }
        )
    if args.json:
        table.emit(rows, (), as_json=True)
        return
    shown = [
        {
            **row,
            "ranges": " ".join(
                f"{r['name'] or r['stream']}:[{r['start_offset']},{r['end_offset']})"
                for r in row["ranges"]
            )
            or "-",
        }
        for row in rows
    ]
    table.emit(
        shown,
        ("key", "kind", "size", "version", "in_manifest", "in_store", "ranges"),
        as_json=False,
        title="objects",
    )
