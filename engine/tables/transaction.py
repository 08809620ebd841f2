"""pyiceberg's Transaction with its view of the table's metadata computed
once per update staged, not at every read.

pyiceberg's ``Transaction.table_metadata`` applies the staged updates to the
table's metadata and deep-copies the result at every read, and one append
reads it about twenty times (the snapshot id, the branch, the properties,
the spec, the schema, ...): with twenty snapshots kept, those copies were
half of a commit's time (bench/table_expiry_bench.py). The metadata models
are frozen, so one view serves every read until an update is staged or the
table's metadata is replaced.

It reads pyiceberg's private ``_table`` and ``_updates``: importing it
checks first that the installed pyiceberg has them (pyiceberg_parts.py).

Imported by the writer only: it needs pyiceberg.
"""

from __future__ import annotations

from pyiceberg.table import Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import TableUpdate, update_table_metadata

from engine.tables import pyiceberg_parts  # noqa: F401  (raises UnsupportedPyiceberg on import)


class ViewOnceTransaction(Transaction):
    """A Transaction whose ``table_metadata`` is computed once per state."""

    _view: tuple[TableMetadata, tuple[TableUpdate, ...], TableMetadata] | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        base, updates = self._table.metadata, self._updates
        view = self._view
        if view is None or view[0] is not base or view[1] is not updates:
            view = (base, updates, update_table_metadata(base, updates))
            self._view = view
        return view[2]
