"""msgpack packing of a large map in pieces, the GIL let go between them.

msgpack packs a value in one C call that holds the GIL, however large: a
64 MiB catalog state packed at once holds every other thread, the event
loop included, for its whole packing (docs/design/0126). Packed here, a
map's large lists and maps are packed ``CHUNK`` elements at a time, so
another thread runs between two chunks. The bytes are msgpack's own for
the same value: a map or array is its header, then its elements' bytes,
one after the other.
"""

from __future__ import annotations

from typing import Any

import msgpack

CHUNK = 512
"""Elements packed in one call: about half a millisecond of a catalog's
ACLs (1 KiB principals)."""


def pack_yielding(value: dict[Any, Any]) -> bytearray:
    """``msgpack.packb(value, use_bin_type=True)``'s bytes, packed in
    pieces: ``value``'s own lists and maps past ``CHUNK`` elements are
    packed ``CHUNK`` at a time."""
    packer = msgpack.Packer(use_bin_type=True)
    packed = bytearray(packer.pack_map_header(len(value)))
    for key, item in value.items():
        packed += packer.pack(key)
        if isinstance(item, list) and len(item) > CHUNK:
            packed += packer.pack_array_header(len(item))
            for start in range(0, len(item), CHUNK):
                packed += b"".join(map(packer.pack, item[start : start + CHUNK]))
        elif isinstance(item, dict) and len(item) > CHUNK:
            packed += packer.pack_map_header(len(item))
            pairs = list(item.items())
            for start in range(0, len(pairs), CHUNK):
                for pair_key, pair_value in pairs[start : start + CHUNK]:
                    packed += packer.pack(pair_key)
                    packed += packer.pack(pair_value)
        else:
            packed += packer.pack(item)
    return packed
