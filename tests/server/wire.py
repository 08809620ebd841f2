"""A small raw-socket Kafka client for protocol tests: it frames requests
with kio's writers (request header v1 or v2, as the request's schema says),
reads one response frame at a time and decodes it with kio's readers, and
can send any bytes at all, framed or not. Also hypothesis strategies for kio
entities, which the protocol tests share."""

from __future__ import annotations

import dataclasses
import datetime
import io
import socket
import struct
from collections.abc import Iterable
from functools import cache
from types import NoneType, TracebackType, UnionType
from typing import Any, Union, get_args, get_origin

from hypothesis import strategies as st
from kio.index import load_request_schema, load_response_schema
from kio.schema.request_header.v1 import RequestHeader as RequestHeaderV1
from kio.schema.request_header.v2 import RequestHeader as RequestHeaderV2
from kio.serial import entity_reader, entity_writer
from kio.static._phantom import Phantom
from kio.static.primitive import Records, i16, i32, i64Timedelta

from engine.protocol.apis import ApiKey

CLIENT_ID = "tidelog-wire-tests"

_INT32 = struct.Struct(">i")


def serialize(entity: Any) -> bytes:
    """Any kio entity as kio writes it."""
    out = io.BytesIO()
    entity_writer(type(entity))(out, entity)
    return out.getvalue()


def header_bytes(
    api_key: int,
    api_version: int,
    correlation_id: int,
    *,
    flexible: bool,
    client_id: str | None = CLIENT_ID,
) -> bytes:
    """A request header: v2 (with a tagged-field section) when ``flexible``."""
    schema = RequestHeaderV2 if flexible else RequestHeaderV1
    return serialize(
        schema(
            request_api_key=i16(api_key),
            request_api_version=i16(api_version),
            correlation_id=i32(correlation_id),
            client_id=client_id,
        )
    )


def _unwrap(field_type: Any) -> tuple[Any, bool, bool]:
    """(item type, nullable, is an array) of a kio field type."""
    nullable = False
    if get_origin(field_type) in (UnionType, Union):
        args = [arg for arg in get_args(field_type) if arg is not NoneType]
        nullable = len(args) < len(get_args(field_type))
        field_type = args[0]
    if get_origin(field_type) is tuple:
        return get_args(field_type)[0], nullable, True
    return field_type, nullable, False


_ZEROS: dict[str, Any] = {
    "string": "",
    "bytes": b"",
    "records": b"",
    "bool": False,
    "uuid": None,
    "timedelta_i32": datetime.timedelta(0),
    "timedelta_i64": datetime.timedelta(0),
}


def build(schema: type, **values: Any) -> Any:
    """A kio entity of ``schema`` from plain values: nested entities may be
    given as dicts (arrays as lists of dicts), keys the schema lacks are
    ignored (so one description fits every version of a message), and fields
    left out take their default, else null, an empty array or a zero."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(schema):
        item, nullable, is_array = _unwrap(f.type)
        nested = dataclasses.is_dataclass(item)
        if f.name in values:
            value = values[f.name]
            if value is not None and is_array:
                value = tuple(build(item, **v) if nested else v for v in value)
            elif nested and isinstance(value, dict):
                value = build(item, **value)
            kwargs[f.name] = value
        elif f.default is not dataclasses.MISSING:
            continue
        elif nullable:
            kwargs[f.name] = None
        elif is_array:
            kwargs[f.name] = ()
        elif nested:
            kwargs[f.name] = build(item)
        else:
            kwargs[f.name] = _ZEROS.get(f.metadata.get("kafka_type", ""), 0)
    return schema(**kwargs)


def standalone_commit(group_id: str, offsets: dict[tuple[str, int], int]) -> Any:
    """An OffsetCommit v8 from outside any group (generation -1, no member
    id), as an admin or a consumer assigning its own partitions sends it:
    ``offsets`` by (topic, partition)."""
    topics: dict[str, list[dict[str, int]]] = {}
    for (topic, partition), offset in offsets.items():
        topics.setdefault(topic, []).append(
            {"partition_index": partition, "committed_offset": offset}
        )
    return build(
        load_request_schema(ApiKey.OFFSET_COMMIT, 8),
        group_id=group_id,
        generation_id_or_member_epoch=-1,
        member_id="",
        topics=[{"name": name, "partitions": ps} for name, ps in topics.items()],
    )


def fetch_from_start(
    topic: str,
    version: int = 11,
    *,
    max_wait: datetime.timedelta = datetime.timedelta(0),
    min_bytes: int = 0,
    max_bytes: int = 1 << 20,
    repeats: int = 1,
) -> Any:
    """A Fetch of ``topic``'s partition 0 from offset 0 that does not wait
    unless given a ``max_wait`` and ``min_bytes`` (no session,
    read_uncommitted, ``max_bytes`` at most, for the partition and the
    whole), naming the partition ``repeats`` times."""
    partition = {"partition": 0, "fetch_offset": 0, "partition_max_bytes": max_bytes}
    return build(
        load_request_schema(ApiKey.FETCH, version),
        replica_id=-1,
        max_wait=max_wait,
        min_bytes=min_bytes,
        max_bytes=max_bytes,
        isolation_level=0,
        session_epoch=-1,
        topics=[{"topic": topic, "partitions": [partition] * repeats}],
    )


def fetch_each(
    version: int,
    partitions: Iterable[tuple[Any, int, int]],
    *,
    current_leader_epoch: int = -1,
    session_id: int = 0,
    session_epoch: int = -1,
    max_wait_ms: int = 0,
    min_bytes: int = 0,
) -> Any:
    """A read_uncommitted Fetch (by default one that does not wait), of each (topic,
    partition, fetch offset) in its own topic entry, in order: the topic by
    name before v13, by id (a uuid.UUID) from it; 1 MiB at most, for each
    partition and the whole. Sessionless unless a session is named."""
    key = "topic_id" if version >= 13 else "topic"
    return build(
        load_request_schema(ApiKey.FETCH, version),
        replica_id=-1,
        max_wait=datetime.timedelta(milliseconds=max_wait_ms),
        min_bytes=min_bytes,
        max_bytes=1 << 20,
        isolation_level=0,
        session_id=session_id,
        session_epoch=session_epoch,
        topics=[
            {
                key: topic,
                "partitions": [
                    {
                        "partition": partition,
                        "current_leader_epoch": current_leader_epoch,
                        "fetch_offset": offset,
                        "last_fetched_epoch": -1,
                        "log_start_offset": -1,
                        "partition_max_bytes": 1 << 20,
                    }
                ],
            }
            for topic, partition, offset in partitions
        ],
    )


def frame(payload: bytes) -> bytes:
    """``payload`` behind its int32 size prefix."""
    return _INT32.pack(len(payload)) + payload


def encode_request(request: Any, correlation_id: int, client_id: str | None = CLIENT_ID) -> bytes:
    """A whole request frame for a kio request entity."""
    header = header_bytes(
        request.__api_key__,
        request.__version__,
        correlation_id,
        flexible=request.__header_schema__ is RequestHeaderV2,
        client_id=client_id,
    )
    return frame(header + serialize(request))


def response_schema_for(request: Any) -> type:
    return load_response_schema(request.__api_key__, request.__version__)


def decode_response(schema: Any, payload: bytes) -> tuple[int, Any]:
    """(correlation id, body) of a response frame without its size prefix."""
    header_schema: Any = schema.__header_schema__
    header, offset = entity_reader(header_schema)(payload, 0)
    body: Any
    body, size = entity_reader(schema)(payload, offset)
    if offset + size != len(payload):
        raise ValueError(f"{len(payload) - offset - size} bytes left after the response body")
    return int(header.correlation_id), body


class ConnectionClosed(Exception):
    """The server closed the connection (EOF or reset)."""


WIRE_TIMEOUT_S = 30.0
"""How long a blocking call waits by default: an answer (or a close) that
comes at once on a quiet machine may take seconds on a loaded one."""


class Wire:
    """One TCP connection to the server. Every blocking call times out."""

    def __init__(
        self, bootstrap: str, timeout: float = WIRE_TIMEOUT_S, *, source: str | None = None
    ) -> None:
        host, _, port = bootstrap.rpartition(":")
        self.sock = socket.create_connection(
            (host, int(port)), timeout=timeout, source_address=(source, 0) if source else None
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self._next_correlation_id = 1
        self._buffer = bytearray()

    def __enter__(self) -> Wire:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def next_correlation_id(self) -> int:
        correlation_id = self._next_correlation_id
        self._next_correlation_id += 1
        return correlation_id

    def send_raw(self, data: bytes | bytearray | memoryview) -> None:
        self.sock.sendall(data)

    def send(self, request: Any, correlation_id: int | None = None) -> int:
        """Sends a kio request entity; returns its correlation id."""
        if correlation_id is None:
            correlation_id = self.next_correlation_id()
        self.send_raw(encode_request(request, correlation_id))
        return correlation_id

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            try:
                chunk = self.sock.recv(max(size - len(self._buffer), 65536))
            except ConnectionResetError as error:
                raise ConnectionClosed("reset by the server") from error
            if not chunk:
                raise ConnectionClosed(f"EOF with {len(self._buffer)} of {size} bytes read")
            self._buffer += chunk

    def read_frame(self) -> bytes:
        """One response frame, without its size prefix."""
        self._fill(4)
        size = _INT32.unpack_from(self._buffer)[0]
        if size < 0:
            raise ValueError(f"a response frame of size {size}")
        self._fill(4 + size)
        payload = bytes(self._buffer[4 : 4 + size])
        del self._buffer[: 4 + size]
        return payload

    def receive(self, schema: type) -> tuple[int, Any]:
        """The next response, decoded as ``schema``: (correlation id, body)."""
        return decode_response(schema, self.read_frame())

    def request(self, request: Any) -> Any:
        """Sends ``request`` and returns its response body."""
        correlation_id = self.send(request)
        answered, body = self.receive(response_schema_for(request))
        if answered != correlation_id:
            raise ValueError(f"correlation id {answered}, expected {correlation_id}")
        return body

    def closed_by_server(self, timeout: float | None = None) -> bool:
        """Whether the server closes this connection within ``timeout``
        (reading and dropping anything it sends before that)."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            while True:
                try:
                    chunk = self.sock.recv(65536)
                except ConnectionResetError:
                    return True
                if not chunk:
                    return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(self.timeout)


# -- strategies ------------------------------------------------------------------------


def records_values() -> st.SearchStrategy[bytes]:
    """Record data: short, or long enough (4 KiB and more) that the response
    encoder attaches it by reference instead of copying it."""
    long = st.tuples(st.binary(min_size=1, max_size=16), st.integers(300, 600)).map(
        lambda pattern_times: pattern_times[0] * pattern_times[1]
    )
    return st.binary(max_size=64) | long


def register_kio_strategies() -> None:
    """Registers kio's own strategies for every kio type defined so far, as
    kio does at import when it finds hypothesis imported: the engine loads
    kio without it (engine/protocol/kio_loading.py), and which comes first
    in a test process depends on the order plugins load. Each type once:
    a registration clears hypothesis's cache of resolved types, and
    registering them all again at every schema drawn from took half the
    time of the protocol properties (tests/server/test_protocol.py)."""
    pending: list[type] = [Phantom]
    while pending:
        phantom = pending.pop()
        pending.extend(phantom.__subclasses__())
        if phantom not in _REGISTERED_KIO_TYPES:
            phantom.__hypothesis_hook__()  # type: ignore[attr-defined]
            _REGISTERED_KIO_TYPES.add(phantom)


_REGISTERED_KIO_TYPES: set[type] = set()


def values_of(field_type: Any) -> st.SearchStrategy[Any]:
    """Values of a kio field type, with arrays of at most three items (kio's
    own strategies, through ``from_type``, for its primitive types:
    ``entities`` registers them first)."""
    if get_origin(field_type) in (UnionType, Union):
        args = [arg for arg in get_args(field_type) if arg is not NoneType]
        inner = values_of(args[0])
        return st.none() | inner if len(args) < len(get_args(field_type)) else inner
    if get_origin(field_type) is tuple:
        return st.lists(values_of(get_args(field_type)[0]), max_size=3).map(tuple)
    if dataclasses.is_dataclass(field_type):
        return entities(field_type)  # type: ignore[arg-type]
    if field_type is Records:
        return records_values()
    if field_type is i64Timedelta:
        # kio reads an int64 of milliseconds as a timedelta only up to
        # int64 microseconds; clients send -1 or hours in these fields.
        bound = datetime.timedelta(microseconds=2**63 - 1000)
        return st.timedeltas(-bound, bound).map(
            lambda d: i64Timedelta.parse(datetime.timedelta(milliseconds=d // _MILLISECOND))
        )
    return st.from_type(field_type)


_MILLISECOND = datetime.timedelta(milliseconds=1)


@cache
def entities(schema: type) -> st.SearchStrategy[Any]:
    """Instances of a kio entity class, every field (defaulted ones too) drawn."""
    register_kio_strategies()
    return st.builds(schema, **{f.name: values_of(f.type) for f in dataclasses.fields(schema)})


def produce_partitions(
    bootstrap: str, topic_data: list[dict[str, Any]], version: int = 9
) -> dict[tuple[str, int], Any]:
    """Each partition's response entry in the answer to a Produce of
    ``topic_data`` at ``version`` with acks=all."""
    produce = build(
        load_request_schema(ApiKey.PRODUCE, version),
        acks=-1,
        timeout=datetime.timedelta(seconds=10),
        topic_data=topic_data,
    )
    with Wire(bootstrap) as wire:
        topics = wire.request(produce).responses
    return {(topic.name, p.index): p for topic in topics for p in topic.partition_responses}


def produce_answers(
    bootstrap: str, topic_data: list[dict[str, Any]], version: int = 9
) -> dict[tuple[str, int], tuple[int, int]]:
    """Each partition's (error code, base offset) in the answer to a
    Produce of ``topic_data`` at ``version`` with acks=all."""
    return {
        key: (p.error_code, p.base_offset)
        for key, p in produce_partitions(bootstrap, topic_data, version).items()
    }
