"""The C extension, built with AddressSanitizer and UBSan, survives hostile input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent.parent
SANITIZERS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]


def _runtime(name: str) -> str | None:
    """The sanitizer runtime gcc links against, to preload into Python."""
    found = subprocess.run(
        ["gcc", f"-print-file-name={name}"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return found if os.path.isabs(found) and os.path.exists(found) else None


@pytest.mark.slow
def test_c_entry_points_survive_fuzzing_under_asan(tmp_path: Path) -> None:
    asan, ubsan = _runtime("libasan.so"), _runtime("libubsan.so")
    if shutil.which("gcc") is None or asan is None or ubsan is None:
        pytest.skip("gcc with the AddressSanitizer runtime is not installed")
    package = tmp_path / "native"
    shutil.copytree(ROOT / "native", package, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    extension = package / f"_cnative{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer", *SANITIZERS,
         f"-I{sysconfig.get_paths()['include']}", f"-I{package / 'src'}",
         *map(str, sorted((package / "src").glob("*.c"))), "-o", str(extension)],
        check=True,
    )  # fmt: skip
    env = dict(
        os.environ,
        PYTHONPATH=str(tmp_path),
        LD_PRELOAD=f"{asan} {ubsan}",
        # Python's own allocator serves objects under 512 bytes from its
        # arenas, where a read past one lands in the next and ASan sees
        # nothing: every allocation goes to malloc, which ASan guards.
        PYTHONMALLOC="malloc",
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1",
    )
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "native" / "asan_fuzz.py"), "20000", "20261125"],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=240,
    )  # fmt: skip
    loaded = run.stdout.partition("\n")[0]
    assert loaded == f"extension {extension}", run.stderr[-4000:]  # the sanitized build
    assert "ERROR: AddressSanitizer" not in run.stderr, run.stderr[-4000:]
    assert "runtime error" not in run.stderr, run.stderr[-4000:]
    assert run.returncode == 0, run.stderr[-4000:]
    assert "no crash" in run.stdout
