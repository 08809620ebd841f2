from collections.abc import Callable, Iterable, Sequence
from typing import Any, SupportsIndex, TypeVar, final, overload

from native.buffers import BytesLike
from native.records import BatchHeader, RecordSpec

_Position = TypeVar("_Position")
_Record = TypeVar("_Record", bound=tuple[Any, ...])
_Item = TypeVar("_Item")

@final
class ByteSlice:
    """Bytes [start, start + length) of an exact bytes or bytearray,
    read-only, not tracked by the cyclic collector (native/src/byte_slice.c)."""

    def __new__(cls, owner: bytes | bytearray, start: int = 0, length: int = -1) -> ByteSlice: ...
    def __len__(self) -> int: ...
    @overload
    def __getitem__(self, key: SupportsIndex, /) -> int: ...
    @overload
    def __getitem__(self, key: slice, /) -> ByteSlice | memoryview: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def tobytes(self) -> bytes: ...
    def hex(self) -> str: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def readonly(self) -> bool: ...
    @property
    def obj(self) -> bytes | bytearray: ...
    @property
    def start(self) -> int: ...

def untracked_view(data: BytesLike, /) -> BytesLike: ...
def untracked_record(cls: type[_Record], /, *items: object) -> _Record: ...
def untracked_tuple(items: Iterable[_Item], /) -> tuple[_Item, ...]: ...
def crc32c(data: BytesLike, crc: int = 0) -> int: ...
def crc32c_backend() -> str: ...
def crc32c_backends() -> list[str]: ...
def crc32c_with(backend: str, data: BytesLike, crc: int = 0, /) -> int: ...
def crc32c_batches(data: BytesLike, crc: int = 0) -> int: ...
def crc32c_combine(crc1: int, crc2: int, length: int, /) -> int: ...
def scan_batches(data: BytesLike) -> list[BatchHeader]: ...
def produce_batch_size(data: BytesLike, *, allow_zstd: bool = True) -> int: ...
def validate_batches(
    data: BytesLike,
    *,
    from_client: bool = True,
    max_inflated: int = ...,
    min_timestamp: int | None = None,
    max_timestamp: int | None = None,
    require_keys: bool = False,
    one_batch: bool = False,
) -> list[BatchHeader]: ...
def rewrite_batch(
    data: BytesLike,
    position: int,
    base_offset: int,
    partition_leader_epoch: int | None = None,
    log_append_time: int | None = None,
    create_time: bool = False,
    max_timestamp: int | None = None,
) -> None: ...
def decode_records(
    data: BytesLike,
    *,
    record_type: type[tuple[Any, ...]] | None = None,
    prefix: tuple[Any, ...] = (),
    min_offset: int = ...,
    skip_control: bool = False,
    max_inflated: int = ...,
) -> list[Any]: ...
def decode_columns(
    data: BytesLike,
    *,
    min_offset: int = ...,
    skip_control: bool = False,
    max_inflated: int = ...,
) -> tuple[Any, ...]: ...
def encode_batch(
    records: Iterable[RecordSpec],
    *,
    base_offset: int = 0,
    compression: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    is_transactional: bool = False,
    is_control: bool = False,
    partition_leader_epoch: int = -1,
    timestamp_type: int = 0,
    base_timestamp: int | None = None,
    offset_deltas: Sequence[int] | None = None,
    last_offset_delta: int | None = None,
) -> bytes: ...
def encode_records(
    values: Sequence[BytesLike | str | None],
    keys: Sequence[BytesLike | str | None] | None = None,
    *,
    timestamp: int,
    start: int = 0,
    max_bytes: int = ...,
    headers: Sequence[tuple[str, BytesLike | None]] = (),
    compression: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    is_transactional: bool = False,
) -> tuple[bytearray, int]: ...
def encode_entries(
    runs: Sequence[
        tuple[
            int,
            Sequence[tuple[int, int, BytesLike] | tuple[int, int, BytesLike, int | None]],
        ]
    ],
    block_bytes: int,
    *,
    with_spans: bool = False,
    copy_small: bool = True,
) -> tuple[
    list[BytesLike],
    int,
    list[tuple[int, int, int, int, int, int]],
    list[tuple[int, int, int, int]],
    dict[tuple[int, int], tuple[int, bytes, BytesLike]] | None,
]: ...
def join_parts(parts: Iterable[BytesLike]) -> bytes: ...
def unfilled_bytearray(size: int) -> bytearray: ...
def extend_unfilled(buffer: bytearray, added: int) -> None: ...
def stamp_batch(
    data: BytesLike,
    headers: Sequence[tuple[str, BytesLike]],
    *,
    reserved_names: Sequence[str],
    max_size: int,
    max_inflated: int = ...,
) -> bytes: ...
def frame_wal_records(appends: Iterable[tuple[Any, ...]], max_length: int) -> bytearray | int: ...
def place_wal_record(
    address: bytes, segment: int, record_type: int, length: int, payload_crc: int, flags: int, /
) -> bytes: ...
def stamp_wal_records(
    frame: bytearray,
    start: int,
    room: int,
    segment: int,
    offset: int,
    first_flags: int,
    position_type: Callable[[int, int], _Position],
    /,
) -> tuple[int, list[_Position]]: ...
