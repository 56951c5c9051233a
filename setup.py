"""The compiled parts of Vigil: agent/_otlpscan.c, which reads OTLP wire bytes without building
protobuf messages (the receiver's request check, metric point counts, the ml processor's attribute scan),
and agent/_otlpjson.c, which writes OTLP/JSON straight off the wire bytes (the file and otlphttp exporters).

Both are optional: where they cannot be built (no C compiler), pip installs Vigil without them and Python
does the same work (protobuf's parsed messages, agent/exporters/json_wire.py), at several times the CPU.
Everything else about the package lives in pyproject.toml.
"""

from setuptools import Extension, setup

_FLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"]

setup(ext_modules=[Extension("agent._otlpscan", ["agent/_otlpscan.c"], optional=True, extra_compile_args=_FLAGS),
                   Extension("agent._otlpjson", ["agent/_otlpjson.c"], optional=True, extra_compile_args=_FLAGS)])
