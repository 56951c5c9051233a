"""The one compiled part of Vigil: agent/_otlpscan.c, which reads OTLP wire bytes without building
protobuf messages (the receiver's request check, metric point counts, the ml processor's attribute scan).

It is optional: where it cannot be built (no C compiler), pip installs Vigil without it and protobuf's
parsed messages do the same work, at several times the CPU. Everything else about the package lives in
pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("agent._otlpscan", ["agent/_otlpscan.c"], optional=True,
                             extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"])])
