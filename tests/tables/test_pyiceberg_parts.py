"""The pyiceberg internals the table writer leans on are checked when its
modules are imported: one clear, typed error naming the supported range."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from pyiceberg.table import Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update.snapshot import _SnapshotProducer

import engine.tables
from engine.errors import EngineError
from engine.tables.pyiceberg_parts import (
    SUPPORTED_PYICEBERG,
    UnsupportedPyiceberg,
    missing_parts,
    require_supported_pyiceberg,
)
from tests.engine.helpers_records import batch
from tests.tables.conftest import TABLE_ON, committed_records, open_engine


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


def test_an_engine_with_an_unsupported_pyiceberg_reports_it_and_serves_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: pyiceberg's snapshot producer as 0.11 shaped it, and
    the writer's modules not imported yet (as in a fresh process)."""
    monkeypatch.setattr(_SnapshotProducer, "__annotations__", {"_manifest_num_counter": object})
    for name in [m for m in sys.modules if m.startswith("engine.tables.")]:
        if name not in ("engine.tables.settings", "engine.tables.service"):
            monkeypatch.delitem(sys.modules, name)
            monkeypatch.delattr(engine.tables, name.rsplit(".", 1)[1], raising=False)
    opened = open_engine(tmp_path)
    try:
        opened.create_topic("calls", 1, TABLE_ON)
        # The writer's modules are imported afresh: their error class too.
        with pytest.raises(EngineError) as refused:
            opened.commit_tables("calls")
        assert type(refused.value).__name__ == "UnsupportedPyiceberg"
        [status] = opened.table_status()
        assert status.last_error.startswith("UnsupportedPyiceberg: ")
        assert SUPPORTED_PYICEBERG in status.last_error
        opened.produce("calls", 0, batch([b"served"]))
        assert [r.value for r in committed_records(opened, "calls")] == [b"served"]
    finally:
        opened.close()
