"""The distribution ships every package of the source tree, and needs each
library it makes every install pull in."""

from __future__ import annotations

import ast
import re
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_in_the_tree_is_in_the_distribution() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    in_tree = {  # directories of modules, namespace packages included
        ".".join(module.parent.relative_to(ROOT).parts)
        for top in ("engine", "wal", "s3stream", "native", "tidelog")
        for module in (ROOT / top).rglob("*.py")
    }
    assert listed == in_tree


def _dependency_name(requirement: str) -> str:
    name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
    return _normalised(name)


def _normalised(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _imported_top_modules() -> set[str]:
    """The top-level modules the shipped packages import, at any depth of a
    module (imports deferred into functions too, and ``import_module("x")``)."""
    imported: set[str] = set()
    for top in ("engine", "wal", "s3stream", "native", "tidelog"):
        for module in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(module.read_text())):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.partition(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.partition(".")[0])
                elif (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute | ast.Name)
                    and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    imported.add(node.args[0].value.partition(".")[0])
    return imported


def test_every_runtime_dependency_is_imported_by_the_shipped_code() -> None:
    """A dependency every install pulls in is one the distribution uses:
    what only the tests or the benchmarks use belongs to their extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = {_dependency_name(requirement) for requirement in project["dependencies"]}
    distributions = packages_distributions()
    used = {
        _normalised(distribution)
        for module in _imported_top_modules()
        for distribution in distributions.get(module, [])
    }
    assert required - used == set()
