"""raymap's C kernels (raymap/_kernels.c); the rest of the build is in pyproject.toml.

Installing builds them, so it needs a C compiler and Python's headers (Debian: gcc and
python3-dev). No fused multiply-add: the kernels round as the numpy they replaced did.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "raymap._kernels",
            sources=["raymap/_kernels.c"],
            extra_compile_args=["-O2", "-ffp-contract=off"],
        )
    ]
)
