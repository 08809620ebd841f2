"""The benchmarks that run a server leave nothing in the temp directory:
callgrind's dumps are 400-500 MB a run, and a run that raised (a server
that cannot start), one whose dumps were kept (copied) and a profile run
(which named a file inside its scratch) each left their scratch behind."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.bench.run import load_bench

produce_requests = load_bench("produce_request_instructions.py", "bench_produce_requests_scratch")
tail = load_bench("tail_instructions.py", "bench_tail_instructions_scratch")
gc_collections = load_bench("produce_gc_collections.py", "bench_produce_gc_collections_scratch")


@pytest.fixture
def temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temp directory the benchmarks' scratch goes in (TMPDIR's stand-in)."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


@pytest.fixture
def unstartable(tmp_path: Path) -> Path:
    """A source tree whose engine exits as it is imported: its server never listens."""
    tree = tmp_path / "tree"
    (tree / "engine").mkdir(parents=True)
    (tree / "engine" / "__init__.py").write_text("raise SystemExit('this engine does not start')\n")
    return tree


def _run(module: ModuleType, tree: Path, profile_to: Path) -> object:
    if module is produce_requests:
        return produce_requests.run_one(tree, "large", 1, 2, 20, "profile", None, profile_to)
    if module is tail:
        return tail.run_one(tree, 5.0, 1, 2, "profile", False, profile_to)
    return gc_collections.run_one(tree, "large", 1, 2, 20, 700)


@pytest.mark.parametrize(
    "module", [produce_requests, tail, gc_collections], ids=lambda m: m.__name__
)
def test_a_run_whose_server_cannot_start_leaves_no_scratch(
    temp: Path, unstartable: Path, tmp_path: Path, module: ModuleType
) -> None:
    with pytest.raises(RuntimeError, match="this engine does not start"):
        _run(module, unstartable, tmp_path / "profile.out")
    assert list(temp.iterdir()) == []


def test_a_profile_run_leaves_its_profile_where_the_caller_asked_and_no_scratch(
    temp: Path, tmp_path: Path
) -> None:
    profile_to = tmp_path / "kept.prof"
    one = produce_requests.run_one(
        produce_requests.HERE, "large", 1, 2, 20, "profile", None, profile_to
    )
    assert one["profile"] == str(profile_to)
    assert profile_to.stat().st_size > 0
    assert list(temp.iterdir()) == []
