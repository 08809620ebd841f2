"""The parts of pyiceberg's internals the table writer leans on, checked
once when the writer's modules are imported: a pyiceberg that moved them
fails there with one error naming the versions tidelog supports, not with
an AttributeError in the middle of a commit (or, worse, a wrong view).

pyiceberg has no public API for two things the writer needs:

- the view of a transaction's metadata with its staged updates applied,
  computed once per state (transaction.py): it reads ``Transaction._table``
  and ``Transaction._updates``, and overrides ``Transaction.table_metadata``,
  a property computed from them since pyiceberg 0.10 (0.9 kept a plain
  attribute, which the override cannot stand in for);
- the manifests a snapshot producer wrote (partitions.py), to delete the
  one a merge append took in: ``_SnapshotProducer._written_manifests``,
  which appeared in pyiceberg 0.12.

So the supported range is what the table tests passed with: 0.12.0. Tried
and refused: 0.9.0, 0.9.1, 0.10.0 and 0.11.1 (see docs/tables.md).

Imported by the writer only: it needs pyiceberg.
"""

from __future__ import annotations

import inspect
from importlib import metadata

from pyiceberg.table import Transaction
from pyiceberg.table.update.snapshot import _SnapshotProducer

from engine.errors import EngineError

SUPPORTED_PYICEBERG = ">=0.12,<0.13"
"""The pyiceberg versions the table writer is tested with (pyproject.toml's bound)."""


class UnsupportedPyiceberg(EngineError):
    """The installed pyiceberg lacks an internal part the table writer uses."""

    def __init__(self, version: str, missing: list[str]) -> None:
        super().__init__(
            f"topics as tables need pyiceberg {SUPPORTED_PYICEBERG}; pyiceberg {version} is "
            f"installed, and it lacks {', '.join(missing)}: "
            f"pip install 'pyiceberg[sql-sqlite,pyarrow]{SUPPORTED_PYICEBERG}'"
        )
        self.version = version
        self.missing = missing


def missing_parts(transaction: type, producer: type) -> list[str]:
    """The parts of ``transaction`` (pyiceberg's Transaction) and
    ``producer`` (its _SnapshotProducer) the writer needs and does not find.
    Instance attributes are looked for in the classes' annotations, which
    pyiceberg declares them in."""
    missing: list[str] = []
    if not isinstance(inspect.getattr_static(transaction, "table_metadata", None), property):
        missing.append("the Transaction.table_metadata property")
    declared = inspect.get_annotations(transaction)
    missing += [f"Transaction.{name}" for name in ("_table", "_updates") if name not in declared]
    if "_written_manifests" not in inspect.get_annotations(producer):
        missing.append("_SnapshotProducer._written_manifests")
    return missing


def require_supported_pyiceberg(
    transaction: type = Transaction, producer: type = _SnapshotProducer
) -> None:
    """Raises UnsupportedPyiceberg if the installed pyiceberg lacks a part."""
    missing = missing_parts(transaction, producer)
    if missing:
        raise UnsupportedPyiceberg(metadata.version("pyiceberg"), missing)


require_supported_pyiceberg()
