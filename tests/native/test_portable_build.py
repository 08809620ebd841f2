"""native/src compiles warning-free where the CRC32C and the record walk
are built: x86-64 with -march of a CPU without SSE4.2 (the crc32
instructions are chosen per function, at run time), at -O0, with clang as
with gcc, and on aarch64 and big-endian s390x and ppc64le, where the x86
code compiles out; and every source assembles where the assembler knows no
instruction past SSE4.2 (binutils before 2.30 cannot encode VPCLMULQDQ on
ZMM registers), so setup.py needs no fallback. Each compiler that is not
installed is skipped."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "native" / "src"
WARNINGS = ["-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror"]
# module.c as well where Python's headers are this machine's.
HOST_SOURCES = ["crc32c.c", "batch.c", "module.c"]
CROSS_SOURCES = ["crc32c.c", "batch.c"]
EVERY_SOURCE = sorted(source.name for source in SRC.glob("*.c"))


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
    # GNU as told the CPU is a Core i7 (SSE4.2, no AVX) refuses any wider
    # instruction, as an assembler that predates it does.
    pytest.param(
        "gcc",
        ["-O3", "-Wa,-march=corei7"],
        EVERY_SOURCE,
        id="gcc-as-corei7",
        marks=pytest.mark.skipif(platform.machine() != "x86_64", reason="an x86-64 assembler"),
    ),
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
