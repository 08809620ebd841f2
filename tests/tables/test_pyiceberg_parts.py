"""The pyiceberg internals the table writer leans on are checked when its
modules are imported: one clear, typed error naming the supported range."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pyiceberg.table import Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update.snapshot import _SnapshotProducer

from engine.tables.pyiceberg_parts import (
    SUPPORTED_PYICEBERG,
    UnsupportedPyiceberg,
    missing_parts,
    require_supported_pyiceberg,
)


def test_the_installed_pyiceberg_has_every_part_the_writer_uses() -> None:
    assert missing_parts(Transaction, _SnapshotProducer) == []
    require_supported_pyiceberg()


class TransactionOf09:
    """pyiceberg 0.9's shape: table_metadata is a plain attribute, set in
    __init__ and replaced at each staged update."""

    table_metadata: TableMetadata
    _table: object
    _updates: tuple[object, ...]


class ProducerOf011:
    """pyiceberg 0.11's snapshot producer: no list of the manifests it wrote."""

    _manifest_num_counter: object


def test_a_pyiceberg_without_the_parts_is_refused_with_the_supported_range() -> None:
    with pytest.raises(UnsupportedPyiceberg) as refused:
        require_supported_pyiceberg(TransactionOf09, ProducerOf011)
    assert refused.value.missing == [
        "the Transaction.table_metadata property",
        "_SnapshotProducer._written_manifests",
    ]
    assert SUPPORTED_PYICEBERG in str(refused.value)


def test_pyproject_bounds_pyiceberg_to_the_supported_range() -> None:
    extras = tomllib.loads(Path("pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("tables", "test"):
        pinned = [d for d in extras[extra] if d.startswith("pyiceberg")]
        assert pinned == [f"pyiceberg[sql-sqlite,pyarrow]{SUPPORTED_PYICEBERG}"]


def test_a_transaction_without_its_staged_state_is_refused() -> None:
    class Renamed:
        @property
        def table_metadata(self) -> None:
            return None

    assert missing_parts(Renamed, _SnapshotProducer) == [
        "Transaction._table",
        "Transaction._updates",
    ]
