"""Every NamedTuple made by ``tuple.__new__`` itself or by
``native.untracked_record`` (a Python call fewer than its own ``__new__``
on a path run once a request or a record) is given each of its fields:
``tuple.__new__`` checks no count (untracked_record checks it, but only
when the site runs), so a field added to
one of these NamedTuples (with a default) would otherwise leave a site
making tuples one short, and reading the new field would fail far from it."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "s3stream")


def _sites() -> list[tuple[str, int, str, int]]:
    """(module, line, NamedTuple's name, fields given) of each call of a
    module-level alias of ``tuple.__new__`` or of ``native.untracked_record``."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            aliases = {
                target.id
                for node in tree.body
                if isinstance(node, ast.Assign) and ast.unparse(node.value) == "tuple.__new__"
                for target in node.targets
                if isinstance(target, ast.Name)
            }
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                    continue
                if node.func.id in aliases:
                    kind, fields = node.args
                    assert isinstance(fields, ast.Tuple), ast.unparse(node)
                    given = fields.elts
                elif node.func.id == "untracked_record":  # native's: (kind, *fields), unchecked too
                    kind, *given = node.args
                else:
                    continue
                assert isinstance(kind, ast.Name), ast.unparse(node)
                assert not any(isinstance(e, ast.Starred) for e in given)
                found.append((module, node.lineno, kind.id, len(given)))
    return found


def test_each_site_gives_every_field_of_its_named_tuple() -> None:
    sites = _sites()
    named = {kind for _, _, kind, _ in sites}
    # The request's and the append's tuples (docs/design/0125) and the
    # embedded producer's: a site lost from the scan fails here.
    assert {
        "RequestHeader",
        "RequestContext",
        "Dispatched",
        "ProduceRequest",
        "TopicData",
        "PartitionData",
        "AppendResult",
        "StoredBatch",
        "RecordSpec",
    } <= named
    for module, line, kind, given in sites:
        fields = getattr(importlib.import_module(module), kind)._fields
        assert given == len(fields), f"{module}:{line} gives {kind} {given} of {fields}"
