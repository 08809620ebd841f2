"""Builds the C hot loop (native._cnative) with the system compiler.

Everything else about the distribution lives in pyproject.toml; setuptools
still needs this file to declare a C extension.
"""

import platform
from glob import glob

from setuptools import Extension, setup

extra_compile_args = ["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
if platform.machine().lower() in ("aarch64", "arm64"):
    # The CRC32 instructions are selected at run time (HWCAP), but the
    # compiler must be allowed to emit them inside the dispatched functions.
    extra_compile_args.append("-march=armv8-a+crc")

setup(
    ext_modules=[
        Extension(
            "native._cnative",
            sources=sorted(glob("native/src/*.c")),
            include_dirs=["native/src"],
            extra_compile_args=extra_compile_args,
        )
    ]
)
