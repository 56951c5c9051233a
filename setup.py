"""The one compiled part of Vigil: agent/_otlpscan.c, the ml processor's wire-level attribute reader.

It is optional: where it cannot be built (no C compiler), pip installs Vigil without it and the ml
processor reads predictions through protobuf's parsed messages instead, at several times the CPU.
Everything else about the package lives in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("agent._otlpscan", ["agent/_otlpscan.c"], optional=True,
                             extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"])])
