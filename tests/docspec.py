"""Readers of the format documents' own tables, for the spec tests.

A spec test builds bytes from what a document in docs/ says, not from the
product's constants: this module reads the document's layouts (the
``name := field type comment`` blocks), its Markdown tables and its code
blocks, and gives the test struct layouts and rows. A change to a document
therefore changes what its spec test builds and expects. CRC32C is written
here from its definition, independent of ``native``.
"""

from __future__ import annotations

import ast
import re
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"

_FIXED = {"int64": "q", "uint64": "Q", "int32": "i", "uint32": "I", "uint16": "H", "uint8": "B"}
_FIELD = re.compile(
    r"^(\w+)\s+(int64|uint64|int32|uint32|uint16|uint8|msgpack|\w+ bytes)\b\s*(.*)$"
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    """``int64`` ... ``uint8``; ``N bytes`` (fixed); ``<field> bytes`` (as long
    as that field says); ``msgpack`` (the rest)."""
    comment: str

    @property
    def code(self) -> str | None:
        """The struct code of a fixed-size field, None for a variable one."""
        if self.type in _FIXED:
            return _FIXED[self.type]
        count = self.type.split()[0]
        return f"{count}s" if count.isdigit() else None

    @property
    def literal(self) -> bytes | int | None:
        """The value the comment fixes: a quoted byte string, or a lone
        number leading it (``1``, ``0``, ``1 = ...``)."""
        quoted = _STRING.search(self.comment)
        if quoted is not None:
            text: str = ast.literal_eval(quoted.group(0))
            return text.encode("latin-1")
        number = re.match(r"(\d+)(\s|$)", self.comment)
        return int(number.group(1)) if number is not None and "=" not in self.comment else None


@dataclass(frozen=True)
class Layout:
    name: str
    fields: tuple[Field, ...]

    def fixed(self) -> struct.Struct:
        """The little-endian struct of the layout's leading fixed-size fields."""
        codes = []
        for field in self.fields:
            if field.code is None:
                break
            codes.append(field.code)
        return struct.Struct("<" + "".join(codes))

    @property
    def names(self) -> list[str]:
        return [field.name for field in self.fields]

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)


@cache
def text(doc: str) -> str:
    return (DOCS / doc).read_text(encoding="utf-8")


def code_blocks(doc: str) -> list[str]:
    return re.findall(r"^```\w*\n(.*?)^```", text(doc), flags=re.M | re.S)


def layouts(doc: str) -> dict[str, Layout]:
    """Every ``name := field type comment`` layout in the document's code
    blocks; a definition that is a sequence of other names (``block :=
    entry+``) has no fields and is left out."""
    found: dict[str, Layout] = {}
    for block in code_blocks(doc):
        name: str | None = None
        fields: list[Field] = []
        for line in [*block.splitlines(), "end := "]:
            definition = re.match(r"^(\w+)\s*:=\s*(.*)$", line)
            rest = line.strip() if definition is None else definition.group(2).strip()
            if definition is not None:
                if name is not None and fields:
                    found[name] = Layout(name, tuple(fields))
                name, fields = definition.group(1), []
            match = _FIELD.match(rest)
            if name is not None and match is not None:
                fields.append(Field(match.group(1), match.group(2), match.group(3).strip()))
    return found


def tables(doc: str) -> list[list[dict[str, str]]]:
    """Every Markdown table of the document: its rows, each keyed by header."""
    found: list[list[dict[str, str]]] = []
    lines = text(doc).splitlines()
    i = 0
    while i < len(lines):
        if (
            lines[i].startswith("|")
            and i + 1 < len(lines)
            and re.match(r"^\|[-|: ]+\|$", lines[i + 1])
        ):
            header = _cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(header, _cells(lines[i]), strict=True)))
                i += 1
            found.append(rows)
        else:
            i += 1
    return found


def table(doc: str, *headers: str) -> list[dict[str, str]]:
    """The one table of ``doc`` whose header row is ``headers``."""
    matching = [rows for rows in tables(doc) if rows and tuple(rows[0]) == headers]
    assert len(matching) == 1, f"{doc}: {len(matching)} tables headed {headers}"
    return matching[0]


def _cells(line: str) -> list[str]:
    # A pipe inside backticks is not a column separator.
    cells, current, quoted = [], "", False
    for char in line.strip()[1:-1]:
        if char == "`":
            quoted = not quoted
        if char == "|" and not quoted:
            cells.append(current.strip())
            current = ""
        else:
            current += char
    cells.append(current.strip())
    return cells


def array_shape(cell: str) -> tuple[str, list[str]]:
    """``["name", a, b]`` in backticks: the record's name and its argument
    names, as the document writes them."""
    code = re.search(r"`(\[.*\])`", cell)
    assert code is not None, cell
    inner = code.group(1)[1:-1]
    parts = split_top(inner)
    return ast.literal_eval(parts[0]), parts[1:]


def split_top(inner: str) -> list[str]:
    """Splits on commas outside brackets and braces."""
    parts, depth, current = [], 0, ""
    for char in inner:
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data: bytes | bytearray | memoryview, running: int = 0) -> int:
    """CRC32C (Castagnoli, reflected polynomial 0x82F63B78), from its definition."""
    crc = running ^ 0xFFFFFFFF
    for byte in bytes(data):
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFFFFFF
