"""The hash chain as docs/tamper-evidence.md writes it, for the tests: its
domain tags, its genesis link and each algorithm's step, read from the
document's formulas and its *Hash algorithms* table and hashed here with
``hashlib`` and ``blake3`` themselves, never with ``s3stream.chain``."""

from __future__ import annotations

import hashlib
import re
import struct

import blake3

from tests import docspec

DOC = "tamper-evidence.md"
_SHA256_STEP = "SHA-256(link || batch)"
_BLAKE3_STEP = re.compile(
    r"BLAKE3-keyed\(key = link, batch\) if len\(batch\) >= (\d+), else SHA-256\(link \|\| batch\)"
)


def tag(name: str) -> bytes:
    """A domain tag as the formulas write it: ``"tidelog.chain.<name>\\0"``."""
    formulas = docspec.code_blocks(DOC)[0]
    found = re.search(r'"(tidelog\.chain\.' + name + r')\\0"', formulas)
    assert found is not None, name
    return found.group(1).encode() + b"\0"


def int64(value: int) -> bytes:
    return struct.pack("<q", value)


def genesis(stream_id: int, offset: int) -> bytes:
    return hashlib.sha256(tag("genesis") + int64(stream_id) + int64(offset)).digest()


def _steps() -> dict[int, tuple[str, str]]:
    """Per algorithm id: its name and its step, as the table writes them."""
    rows = docspec.table(DOC, "Id", "Algorithm", "step(algorithm, link, batch)")
    return {
        int(row["Id"]): (
            row["Algorithm"],
            row["step(algorithm, link, batch)"].replace("\\|", "|").replace("`", ""),
        )
        for row in rows
    }


def algorithm_ids() -> dict[str, int]:
    """The algorithms' ids by name: ``{"SHA-256": 1, ...}``."""
    return {name: algorithm for algorithm, (name, _) in _steps().items()}


def blake3_from_bytes() -> int:
    """From what length the BLAKE3 algorithm links a batch with BLAKE3."""
    _, step = _steps()[algorithm_ids()["BLAKE3"]]
    found = _BLAKE3_STEP.search(step)
    assert found is not None, step
    return int(found.group(1))


def step(algorithm: int, link: bytes, batch: bytes) -> bytes:
    """``link(n)`` from ``link(n-1)`` and batch n, by the table's row."""
    _, formula = _steps()[algorithm]
    if formula == _SHA256_STEP:
        return hashlib.sha256(link + batch).digest()
    if _BLAKE3_STEP.fullmatch(formula) is not None:
        if len(batch) >= blake3_from_bytes():
            return blake3.blake3(batch, key=link).digest()
        return hashlib.sha256(link + batch).digest()
    raise AssertionError(f"a step this reader does not know: {formula}")


def extend(algorithm: int, link: bytes, batches: list[bytes]) -> bytes:
    for batch in batches:
        link = step(algorithm, link, batch)
    return link
