"""Writes docs/config-reference.md from the config models, so the reference cannot drift from the code.

    .venv/bin/python tools/gen_config_reference.py          # rewrite docs/config-reference.md
    .venv/bin/python tools/gen_config_reference.py --check  # exit 1 if it is stale

Every registered receiver, processor and exporter, and the `service` section:
each key with its type, its default and the comment written beside it in the
model (the comment on the same line, or the comment lines just above it).
tests/docs/test_config_reference.py fails while the committed file differs
from what this writes.
"""

from __future__ import annotations

import argparse
import ast
import enum
import inspect
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent import config as config_module  # noqa: E402
from agent import registry  # noqa: E402
from agent.component import Kind  # noqa: E402

OUTPUT = REPO / "docs" / "config-reference.md"


# --- comments beside the fields in the source ---------------------------------------------------


def field_comments(model: type[BaseModel]) -> dict[str, str]:
    """{field: comment} from the class body of `model` and its bases (the nearest class wins)."""
    comments: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(cls))
        except (OSError, TypeError):
            continue
        lines = source.splitlines()
        tree = ast.parse(source)
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node in body:
            if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
                continue
            parts = []
            i = node.lineno - 2
            above = []
            while i >= 0 and lines[i].strip().startswith("#"):
                above.insert(0, lines[i].strip().lstrip("#").strip())
                i -= 1
            parts += above
            end = lines[node.end_lineno - 1]
            trailing = _trailing_comment(end)
            if trailing:
                parts.append(trailing)
            if parts:
                comments[node.target.id] = " ".join(p for p in parts if p)
    return comments


def _trailing_comment(line: str) -> str:
    in_string: str | None = None
    for i, ch in enumerate(line):
        if in_string:
            if ch == in_string and line[i - 1] != "\\":
                in_string = None
        elif ch in "\"'":
            in_string = ch
        elif ch == "#":
            return line[i + 1:].strip()
    return ""


# --- types and defaults ---------------------------------------------------------------------


def type_name(annotation: Any) -> str:
    if annotation is Any:
        return "any"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        if any("parse_duration" in repr(getattr(m, "func", m)) for m in annotation.__metadata__):
            return "duration"
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        text = " or ".join(dict.fromkeys(names))
        return text + (" (optional)" if type(None) in args else "")
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (list, tuple, set, frozenset):
        inner = type_name(args[0]) if args else "any"
        return f"list of {inner}"
    if origin is dict:
        return f"mapping of {type_name(args[1])}" if len(args) == 2 else "mapping"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return "mapping"
        if issubclass(annotation, enum.Enum):
            return " \\| ".join(f"`{m.value}`" for m in annotation)
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
            annotation.__name__, annotation.__name__)
    if annotation is Any:
        return "any"
    return str(annotation).replace("typing.", "")


def _duration(seconds: float) -> str:
    if seconds == 0:
        return "0s"
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def default_text(field: Any, type_text: str) -> str:
    if field.default_factory is not None:
        return "computed"
    default = field.default
    if default is PydanticUndefined:
        return "required"
    if default is None:
        return "—"
    if isinstance(default, BaseModel):
        return "see below"
    if type_text.startswith("duration") and isinstance(default, (int, float)):
        return f"`{_duration(float(default))}`"
    if isinstance(default, enum.Enum):
        default = default.value
    if isinstance(default, str):
        return f'`"{default}"`' if default == "" else f"`{default}`"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, (list, tuple, dict)) and not default:
        return "`[]`" if not isinstance(default, dict) else "`{}`"
    return f"`{_yaml_inline(default)}`"


def _yaml_inline(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_inline(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, BaseModel):
        return "{…}"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _models_in(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """The models a field's type holds: ("", M) for M or M | None, ("[]", M) for list[M], (".<name>", M)
    for dict[str, M]."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _models_in(args[0])
    if origin in (typing.Union, types.UnionType):
        return [m for a in args for m in _models_in(a)]
    if origin in (list, tuple):
        return [("[]", m) for _, m in (_models_in(args[0]) if args else [])]
    if origin is dict and len(args) == 2:
        return [(".<name>", m) for _, m in _models_in(args[1])]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    return []


def rows(model: type[BaseModel], prefix: str = "", seen: tuple = ()) -> list[tuple[str, str, str, str]]:
    out = []
    comments = field_comments(model)
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = f"{prefix}{key}"
        type_text = type_name(field.annotation)
        if any("parse_duration" in repr(getattr(m, "func", m)) for m in field.metadata):
            type_text = "duration"  # pydantic keeps Duration's validator in the field's metadata
        note = comments.get(name, "") or (field.description or "")
        out.append((path, type_text, default_text(field, type_text), note))
        for suffix, sub in _models_in(field.annotation):
            if sub in seen or sub is model:
                continue
            out += rows(sub, f"{path}{suffix}.", seen + (model,))
    return out


def table(model: type[BaseModel]) -> str:
    lines = ["| key | type | default | notes |", "|---|---|---|---|"]
    for path, type_text, default, note in rows(model):
        note = note.replace("|", "\\|")
        lines.append(f"| `{path}` | {type_text} | {default} | {note} |")
    return "\n".join(lines) if len(lines) > 2 else "No settings."


# --- the page -----------------------------------------------------------------------------------


def render() -> str:
    parts = [
        "# Configuration reference",
        "",
        "Generated from the config models by `tools/gen_config_reference.py`; do not edit by hand "
        "(`tests/docs/test_config_reference.py` fails while this page and the code disagree).",
        "",
        "Durations are written `200ms`, `10s`, `5m`, `1h`, `1m30s`. Any string may use `${env:NAME}` or "
        "`${env:NAME:-default}`. Unknown keys are errors. A component id is `type` or `type/name`. "
        "`README.md` shows how the sections fit together; `docs/user-guide.md` walks through them.",
        "",
        "## Contents",
        "",
    ]
    sections = []
    for kind in (Kind.RECEIVER, Kind.PROCESSOR, Kind.EXPORTER, Kind.EXTENSION):
        factories = registry.factories(kind)
        parts.append(f"- {kind.section}: " + ", ".join(f"[`{t}`](#{kind.value}-{t})" for t in sorted(factories)))
        for type_ in sorted(factories):
            factory = factories[type_]
            signals = ", ".join(sorted(s.value for s in factory.signals))
            emits = ", ".join(sorted(s.value for s in factory.emits))
            sections += [
                f'<a id="{kind.value}-{type_}"></a>',
                f"### {kind.value} `{type_}`",
                "",
                f"{factory.description[0].upper()}{factory.description[1:]}.",
                "",
                ("Runs when `service.extensions` lists it." if kind is Kind.EXTENSION else
                 f"Pipelines: {signals}" + (f"; derives {emits} (list `{type_}` among that pipeline's receivers)"
                                          if emits else "") + "."),
                "",
                table(factory.config_model),
                "",
            ]
    parts.append("- [`service`](#service)")
    sections += ['<a id="service"></a>', "### `service`", "", table(config_module.ServiceConfig), ""]
    return "\n".join(parts + ["", *sections]).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/config-reference.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(REPO)} is stale: run .venv/bin/python tools/gen_config_reference.py",
                  file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
