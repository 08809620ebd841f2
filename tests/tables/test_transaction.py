"""ViewOnceTransaction: pyiceberg's view of the table's metadata with the
staged updates applied, computed once per state rather than at each read."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from pyiceberg.table import Transaction

from engine.tables.transaction import ViewOnceTransaction
from tests.tables.conftest import catalog_of


def test_the_view_is_computed_once_per_state_and_follows_each_update(tmp_path: Path) -> None:
    (tmp_path / "data" / "tables").mkdir(parents=True)
    catalog = catalog_of(tmp_path, warehouse=f"file://{tmp_path}/warehouse")
    catalog.create_namespace("tidelog")
    table = catalog.create_table(("tidelog", "viewed"), pa.schema([("n", pa.int64())]))
    txn = ViewOnceTransaction(table)
    first = txn.table_metadata
    assert txn.table_metadata is first  # no copy at the second read
    assert first == Transaction(table).table_metadata  # what pyiceberg's own gives

    txn.set_properties({"owner": "audit"})
    updated = txn.table_metadata
    assert updated is not first and updated.properties["owner"] == "audit"
    assert txn.table_metadata is updated
    assert "owner" not in table.metadata.properties  # staged, not committed

    txn.commit_transaction()
    assert table.metadata.properties["owner"] == "audit"
    assert catalog.load_table(("tidelog", "viewed")).properties["owner"] == "audit"
