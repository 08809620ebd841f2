"""The distribution ships every package of the source tree."""

from __future__ import annotations

import tomllib
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
