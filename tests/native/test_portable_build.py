"""native/src compiles warning-free where the CRC32C and the record walk
are built: x86-64 with -march of a CPU without SSE4.2, PCLMUL or AVX-512
(those are chosen per function, at run time), at -O0, with clang as with
gcc, and on aarch64 and big-endian s390x and ppc64le, where the x86 code
compiles out; and where the assembler cannot encode the CRC32C fold, the
extension builds without it. Each compiler that is not installed is
skipped."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "native" / "src"
WARNINGS = ["-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror"]
# module.c as well where Python's headers are this machine's.
HOST_SOURCES = ["crc32c.c", "batch.c", "module.c"]
CROSS_SOURCES = ["crc32c.c", "batch.c"]


def _clang() -> str | None:
    """clang, or the newest clang-N on the path (Debian installs it so)."""
    if shutil.which("clang"):
        return "clang"
    found = sorted(
        (name for directory in os.get_exec_path() if os.path.isdir(directory)
         for name in os.listdir(directory) if name.startswith("clang-") and name[6:].isdigit()),
        key=lambda name: int(name[6:]),
    )  # fmt: skip
    return found[-1] if found else None


BUILDS = [
    pytest.param("gcc", ["-O2", "-march=core2"], HOST_SOURCES, id="gcc-march-core2"),
    pytest.param("gcc", ["-O0"], HOST_SOURCES, id="gcc-O0"),
    pytest.param(_clang(), ["-O2", "-march=core2"], HOST_SOURCES, id="clang-march-core2"),
    pytest.param(_clang(), ["-O3"], HOST_SOURCES, id="clang-O3"),
    # setup.py's flag on aarch64: crc32 instructions only in what it dispatches to.
    pytest.param(
        "aarch64-linux-gnu-gcc", ["-O3", "-march=armv8-a+crc"], CROSS_SOURCES, id="aarch64"
    ),
    pytest.param("s390x-linux-gnu-gcc", ["-O3"], CROSS_SOURCES, id="s390x"),
    pytest.param("powerpc64le-linux-gnu-gcc", ["-O3"], CROSS_SOURCES, id="ppc64le"),
]


@pytest.mark.parametrize(("compiler", "flags", "sources"), BUILDS)
def test_the_c_sources_compile_warning_free(
    tmp_path: Path, compiler: str | None, flags: list[str], sources: list[str]
) -> None:
    if compiler is None or shutil.which(compiler) is None:
        pytest.skip(f"{compiler or 'clang'} is not installed")
    include = [f"-I{SRC}", f"-I{sysconfig.get_paths()['include']}"]
    for source in sources:
        build = subprocess.run(
            [compiler, *WARNINGS, *flags, *include, "-fPIC", "-c", str(SRC / source),
             "-o", str(tmp_path / f"{source}.o")],
            capture_output=True, text=True, check=False, timeout=240,
        )  # fmt: skip
        assert build.returncode == 0, f"{compiler} {source}:\n{build.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() != "x86_64", reason="the fold is x86-64's")
@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_an_assembler_without_avx512_builds_the_extension_without_the_fold(
    tmp_path: Path,
) -> None:
    """GNU as told the CPU is a Core i7 (-march=corei7: SSE4.2, no AVX)
    refuses the fold's instructions as binutils before 2.30 refuse
    VPCLMULQDQ on ZMM registers: setup.py builds crc32c.c without the
    fold, and the extension imports, runs the 3-way loop, and agrees with
    the crc32c package."""
    root = SRC.parents[1]
    for part in ("native", "setup.py", "pyproject.toml", "README.md"):
        source = root / part
        if source.is_dir():
            shutil.copytree(source, tmp_path / part, ignore=shutil.ignore_patterns("*.so"))
        else:
            shutil.copy(source, tmp_path / part)
    env = {**os.environ, "CC": "gcc", "CFLAGS": "-Wa,-march=corei7"}
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    assert "building without the VPCLMULQDQ fold" in build.stdout
    check = subprocess.run(
        [sys.executable, "-c", _RUNS_WITHOUT_THE_FOLD],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr[-3000:]
    built, backends = check.stdout.split("\n", 1)
    assert built.startswith(str(tmp_path))
    assert "avx512-vpclmulqdq" not in backends


_RUNS_WITHOUT_THE_FOLD = """
import os, crc32c
from native import _cnative
data = os.urandom(70_000)
for length in (*range(0, 4100, 61), 70_000):
    assert _cnative.crc32c(data[:length], 9) == crc32c.crc32c(data[:length], 9), length
print(_cnative.__file__)
print(_cnative.crc32c_backends())
"""
