"""Builds the C hot loop (native._cnative) with the system compiler.

Everything else about the distribution lives in pyproject.toml; setuptools
still needs this file to declare a C extension.
"""

import platform
import tempfile
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError

extra_compile_args = ["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
if platform.machine().lower() in ("aarch64", "arm64"):
    # The CRC32 instructions are selected at run time (HWCAP), but the
    # compiler must be allowed to emit them inside the dispatched functions.
    extra_compile_args.append("-march=armv8-a+crc")

CRC32C = "native/src/crc32c.c"


class BuildExt(build_ext):
    """Leaves the CRC32C fold out where crc32c.c does not build with it.

    A compiler that knows VPCLMULQDQ's intrinsics may hand them to an
    assembler that does not (binutils before 2.30 cannot encode it on ZMM
    registers): crc32c.c is compiled once as it is, and where that fails,
    again without the fold (TL_NO_FOLD), so the rest of the hot loop builds.
    """

    def build_extension(self, ext: Extension) -> None:
        if platform.machine().lower() in ("x86_64", "amd64") and not self._builds(ext):
            print("native/src/crc32c.c: building without the VPCLMULQDQ fold")
            ext.define_macros.append(("TL_NO_FOLD", "1"))
        super().build_extension(ext)

    def _builds(self, ext: Extension) -> bool:
        with tempfile.TemporaryDirectory() as scratch:
            try:
                self.compiler.compile(
                    [CRC32C],
                    output_dir=scratch,
                    macros=ext.define_macros,
                    include_dirs=ext.include_dirs,
                    extra_postargs=ext.extra_compile_args,
                )
            except CompileError:
                return False
        return True


setup(
    ext_modules=[
        Extension(
            "native._cnative",
            sources=sorted(glob("native/src/*.c")),
            include_dirs=["native/src"],
            extra_compile_args=extra_compile_args,
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
