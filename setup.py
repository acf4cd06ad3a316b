"""Build of the optional C kernels (everything else is in pyproject.toml).

``daskmeans/kernels/_native.c`` is a plain C library loaded through ctypes:
where it cannot be compiled (no C compiler, or one without GCC's vector
extensions) the install goes on without it and the NumPy kernels run.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "daskmeans.kernels._native_lib",
            sources=["daskmeans/kernels/_native.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
