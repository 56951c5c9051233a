"""OTTL conditions (the Collector's OpenTelemetry Transformation Language), the subset Vigil runs.

A condition is parsed with a grammar (lark, LALR) and compiled once into a Python function of one
item's context. The subset: paths (`name`, `attributes["k"]`, `resource.attributes["k"]`,
`instrumentation_scope.name`, `status.code`, `severity_number`, `body`, `metric.type`, ... with the
context's own prefix allowed, `span.name`), string / number / bool / nil literals, the enums
(`SPAN_KIND_SERVER`, `STATUS_CODE_ERROR`, `SEVERITY_NUMBER_WARN`, `METRIC_DATA_TYPE_SUM`, ...),
comparisons (== != < <= > >=), `IsMatch` (an RE2 pattern, as in the Collector), `IsRootSpan`,
`HasAttrKeyOnDatapoint`, `HasAttrOnDatapoint`, `and`, `or`, `not` and parentheses. Anything else is
refused by `parse` with the reason, so `vigil validate` names it.

Comparisons follow OTTL's rules: nil equals only nil, numbers compare across int and double, values
of different types are only unequal. Indexing into a value that is not a map or a list is an error
at run time (`OttlError`), which the filter processor's `error_mode` decides about.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from agent import attributes as attrs
from agent.regex import compile_user_regex

_GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: factor (_AND factor)*
?factor: _NOT factor                     -> not_
       | "(" or_expr ")"
       | value OP value                  -> compare
       | value                           -> truth
?value: path
      | ESCAPED_STRING                   -> string
      | SIGNED_NUMBER                    -> number
      | _TRUE                            -> true
      | _FALSE                           -> false
      | _NIL                             -> nil
      | UPPER_NAME                       -> enum
      | UPPER_NAME "(" [value ("," value)*] ")"  -> call
path: LOWER_NAME ("." LOWER_NAME)* index*
index: "[" (ESCAPED_STRING | INT) "]"

OP: "==" | "!=" | "<=" | ">=" | "<" | ">"
_OR: "or"
_AND: "and"
_NOT: "not"
_TRUE: "true"
_FALSE: "false"
_NIL: "nil"
UPPER_NAME: /[A-Z][A-Za-z0-9_]*/
LOWER_NAME: /[a-z_][a-z0-9_]*/
%import common.ESCAPED_STRING
%import common.SIGNED_NUMBER
%import common.INT
%import common.WS
%ignore WS
"""

_PARSER = Lark(_GRAMMAR, parser="lalr", maybe_placeholders=True)


class OttlError(Exception):
    """A condition failed on one item (indexing into a string, say); `error_mode` decides what follows."""


@dataclass
class Item:
    """What a condition reads: the item and the levels above it (None where a context has none)."""

    resource: Any = None        # opentelemetry.proto.resource.v1.Resource
    scope: Any = None           # InstrumentationScope
    span: Any = None            # the span, or a span event's span
    event: Any = None           # Span.Event
    metric: Any = None          # the metric, or a data point's metric
    datapoint: Any = None
    log: Any = None             # LogRecord


# --- OTTL's own functions ----------------------------------------------------------------------

# The functions of opentelemetry-collector-contrib's pkg/ottl/ottlfuncs (README.md), so a condition pasted
# from the Collector's docs is told that Vigil does not run the one it calls, not that it does not exist.
_OTTL_CONVERTERS = frozenset("""
    All Any Base64Decode Base64Encode Bool Coalesce CommunityID Concat ContainsValue ConvertAttributesToElementsXML
    ConvertCase ConvertTextToElementsXML Day Decode Double Duration ExtractGrokPatterns ExtractPatterns Filter Find
    FNV Format FormatTime GetXML HasPrefix HasSuffix Hex Hour Hours Index InsertXML Int IsBool IsDouble IsEmpty
    IsInCIDR IsInt IsList IsMap IsMatch IsRootSpan IsString IsValidLuhn Keys Len Log MapEach MD5 Microseconds
    Milliseconds Minute Minutes Month Murmur3Hash Murmur3Hash128 Nanosecond Nanoseconds Now ParseCSV ParseInt
    ParseJSON ParseKeyValue ParseSeverity ParseSimplifiedXML ParseXML ProfileID RemoveXML Second Seconds SHA1
    SHA256 SHA512 SliceToMap Sort SpanID Split String Substring Time ToCamelCase ToKeyValueString ToLowerCase
    ToSnakeCase ToUpperCase TraceID Trim TrimPrefix TrimSuffix TruncateTime Unix UnixMicro UnixMilli UnixNano
    UnixSeconds URL UserAgent UUID UUIDv7 Values Weekday When XXH3 XXH128 Year
""".split())
_OTTL_EDITORS = frozenset("""
    append delete_index delete_key delete_matching_keys flatten keep_keys keep_matching_keys limit merge_maps
    replace_all_matches replace_all_patterns replace_match replace_pattern set stringify_all truncate_all
""".split())
# The functions Vigil runs, and the context each runs in (None: every context).
_SUBSET = {"IsMatch": None, "IsRootSpan": "span", "HasAttrKeyOnDatapoint": "metric", "HasAttrOnDatapoint": "metric"}
_SUBSET_TEXT = ", ".join(_SUBSET)


def _not_run(name: str) -> str | None:
    """Why a call of `name` is refused where it is an OTTL function outside the subset."""
    if name in _OTTL_EDITORS:
        return f"{name!r} is an OTTL editor, which changes telemetry: a condition only reads it"
    if name in _OTTL_CONVERTERS and name not in _SUBSET:
        return f"{name!r} is an OTTL function Vigil does not run (the subset: {_SUBSET_TEXT})"
    return None


# --- enums ---------------------------------------------------------------------------------------

_SEVERITIES = {}
for _base, _name in ((1, "TRACE"), (5, "DEBUG"), (9, "INFO"), (13, "WARN"), (17, "ERROR"), (21, "FATAL")):
    _SEVERITIES[f"SEVERITY_NUMBER_{_name}"] = _base
    for _n in (2, 3, 4):
        _SEVERITIES[f"SEVERITY_NUMBER_{_name}{_n}"] = _base + _n - 1
_SEVERITIES["SEVERITY_NUMBER_UNSPECIFIED"] = 0

_SPAN_ENUMS = {
    "SPAN_KIND_UNSPECIFIED": 0, "SPAN_KIND_INTERNAL": 1, "SPAN_KIND_SERVER": 2, "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4, "SPAN_KIND_CONSUMER": 5,
    "STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2,
}
_METRIC_ENUMS = {
    "METRIC_DATA_TYPE_NONE": 0, "METRIC_DATA_TYPE_GAUGE": 1, "METRIC_DATA_TYPE_SUM": 2,
    "METRIC_DATA_TYPE_HISTOGRAM": 3, "METRIC_DATA_TYPE_EXPONENTIAL_HISTOGRAM": 4, "METRIC_DATA_TYPE_SUMMARY": 5,
    "AGGREGATION_TEMPORALITY_UNSPECIFIED": 0, "AGGREGATION_TEMPORALITY_DELTA": 1,
    "AGGREGATION_TEMPORALITY_CUMULATIVE": 2,
}

# --- paths ---------------------------------------------------------------------------------------

_METRIC_TYPES = {"gauge": 1, "sum": 2, "histogram": 3, "exponential_histogram": 4, "summary": 5}


def _attributes(kvs) -> dict[str, AnyValue]:
    return {kv.key: kv.value for kv in kvs}


def _metric_field(metric, field: str) -> Any:
    kind = metric.WhichOneof("data")
    if field == "type":
        return _METRIC_TYPES.get(kind, 0)
    data = getattr(metric, kind) if kind else None
    if field == "aggregation_temporality":
        return getattr(data, "aggregation_temporality", 0)
    if field == "is_monotonic":
        return getattr(data, "is_monotonic", False)
    return getattr(metric, field)


def _point_value(point, field: str) -> Any:
    if field in ("value_int", "value_double"):
        want = "as_int" if field == "value_int" else "as_double"
        has = point.WhichOneof("value") if "as_int" in point.DESCRIPTOR.fields_by_name else None
        return getattr(point, want) if has == want else None
    if field not in point.DESCRIPTOR.fields_by_name:
        return None
    return getattr(point, field)


# Each context: its name (the prefix a path may start with), the parts above it that a path may name,
# its own fields (name -> reader of the Item) and its enums.
_SCOPE_FIELDS = {
    "name": lambda i: i.scope.name, "version": lambda i: i.scope.version,
    "attributes": lambda i: _attributes(i.scope.attributes),
}
_SPAN_FIELDS = {
    "name": lambda i: i.span.name, "kind": lambda i: i.span.kind,
    "attributes": lambda i: _attributes(i.span.attributes),
    "status": lambda i: {"code": i.span.status.code, "message": i.span.status.message},
    "start_time_unix_nano": lambda i: i.span.start_time_unix_nano,
    "end_time_unix_nano": lambda i: i.span.end_time_unix_nano,
    "trace_state": lambda i: i.span.trace_state,
    "dropped_attributes_count": lambda i: i.span.dropped_attributes_count,
}
_EVENT_FIELDS = {
    "name": lambda i: i.event.name, "attributes": lambda i: _attributes(i.event.attributes),
    "time_unix_nano": lambda i: i.event.time_unix_nano,
    "dropped_attributes_count": lambda i: i.event.dropped_attributes_count,
}
_METRIC_FIELDS = {f: functools.partial(lambda f, i: _metric_field(i.metric, f), f)
                  for f in ("name", "description", "unit", "type", "aggregation_temporality", "is_monotonic")}
_POINT_FIELDS = {
    "attributes": lambda i: _attributes(i.datapoint.attributes),
    **{f: functools.partial(lambda f, i: _point_value(i.datapoint, f), f)
       for f in ("start_time_unix_nano", "time_unix_nano", "value_int", "value_double", "count", "sum", "flags")},
}
_LOG_FIELDS = {
    "body": lambda i: i.log.body, "severity_number": lambda i: i.log.severity_number,
    "severity_text": lambda i: i.log.severity_text, "attributes": lambda i: _attributes(i.log.attributes),
    "time_unix_nano": lambda i: i.log.time_unix_nano,
    "observed_time_unix_nano": lambda i: i.log.observed_time_unix_nano,
    "flags": lambda i: i.log.flags, "event_name": lambda i: i.log.event_name,
    "dropped_attributes_count": lambda i: i.log.dropped_attributes_count,
}
_RESOURCE_FIELDS = {"attributes": lambda i: _attributes(i.resource.attributes),
                    "dropped_attributes_count": lambda i: i.resource.dropped_attributes_count}


@dataclass(frozen=True)
class Context:
    name: str
    fields: dict[str, Callable[[Item], Any]]
    parents: dict[str, dict[str, Callable[[Item], Any]]]  # "resource", "instrumentation_scope", "span", ...
    enums: dict[str, int]


# `scope.` is the context-prefixed spelling of `instrumentation_scope.`.
_COMMON_PARENTS = {"resource": _RESOURCE_FIELDS, "instrumentation_scope": _SCOPE_FIELDS, "scope": _SCOPE_FIELDS}
CONTEXTS = {
    "resource": Context("resource", _RESOURCE_FIELDS, {}, {}),
    "span": Context("span", _SPAN_FIELDS, _COMMON_PARENTS, _SPAN_ENUMS),
    "spanevent": Context("spanevent", _EVENT_FIELDS, {**_COMMON_PARENTS, "span": _SPAN_FIELDS}, _SPAN_ENUMS),
    "metric": Context("metric", _METRIC_FIELDS, _COMMON_PARENTS, _METRIC_ENUMS),
    "datapoint": Context("datapoint", _POINT_FIELDS, {**_COMMON_PARENTS, "metric": _METRIC_FIELDS},
                         _METRIC_ENUMS),
    "log": Context("log", _LOG_FIELDS, _COMMON_PARENTS, _SEVERITIES),
}


# --- values and comparisons ------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """An AnyValue as the Python value OTTL would compare (None for an empty one)."""
    if isinstance(value, AnyValue):
        return attrs.any_value(value)
    return value


def _index(value: Any, key: str | int) -> Any:
    if value is None:
        return None  # a key that is not there reads nil, however deep the path goes
    if isinstance(value, AnyValue):
        kind = value.WhichOneof("value")
        if kind == "kvlist_value":
            value = {kv.key: kv.value for kv in value.kvlist_value.values}
        elif kind == "array_value":
            value = list(value.array_value.values)
        else:
            value = _plain(value)
    if isinstance(key, str):
        if isinstance(value, dict):
            return value.get(key)
        raise OttlError(f"type {_type_name(value)} does not support string indexing")
    if isinstance(value, list):
        if not 0 <= key < len(value):
            raise OttlError(f"index {key} out of bounds")
        return value[key]
    raise OttlError(f"type {_type_name(value)} does not support int indexing")


def _type_name(value: Any) -> str:
    if value is None:
        return "nil"
    return {bool: "bool", int: "int", float: "double", str: "string", bytes: "bytes", list: "slice",
            dict: "map"}.get(type(value), type(value).__name__)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_ORDERINGS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
              ">=": lambda a, b: a >= b}


def compare_values(left: Any, op: str, right: Any) -> bool:
    """OTTL's comparison: equal types compare, numbers across int/double, anything else only differs."""
    left, right = _plain(left), _plain(right)
    if op in ("==", "!="):
        if left is None or right is None:
            same = left is None and right is None
        elif _number(left) and _number(right):
            same = left == right
        elif type(left) is not type(right):
            same = False
        else:
            same = left == right
        return same if op == "==" else not same
    if _number(left) and _number(right):
        return _ORDERINGS[op](left, right)
    if type(left) is type(right) and isinstance(left, (str, bytes)):
        return _ORDERINGS[op](left, right)
    return False


def _as_string(value: Any) -> str | None:
    """OTTL's string-like reading of a value (IsMatch's target): None where there is none."""
    value = _plain(value)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return attrs.format_number(value)
    if isinstance(value, bytes):
        return value.hex()
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# --- compiling -----------------------------------------------------------------------------------


class _Refused(Exception):
    """A condition outside the subset: the reason, for the config error."""


def _literal_string(node: Any) -> str | None:
    return node.literal if isinstance(node, _Const) and isinstance(node.literal, str) else None


@dataclass
class _Const:
    literal: Any

    def __call__(self, item: Item) -> Any:
        return self.literal


@v_args(inline=True)
class _Compiler(Transformer):
    def __init__(self, context: Context) -> None:
        super().__init__()
        self._context = context

    # values
    def string(self, token: Token):
        try:
            return _Const(json.loads(token))
        except ValueError:
            raise _Refused(f"invalid escape in the string at column {token.column} "
                           "(write \\\\ for a backslash, as in \"\\\\d+\")") from None

    def number(self, token: Token):
        text = str(token)
        return _Const(float(text) if any(c in text for c in ".eE") else int(text))

    def true(self):
        return _Const(True)

    def false(self):
        return _Const(False)

    def nil(self):
        return _Const(None)

    def enum(self, token: Token):
        value = self._context.enums.get(str(token))
        if value is None:
            raise _Refused(f"unknown enum {str(token)!r} in the {self._context.name} context")
        return _Const(value)

    def index(self, token: Token):
        return str(token)

    def path(self, *parts):
        names = [str(p) for p in parts if isinstance(p, Token) and p.type == "LOWER_NAME"]
        keys = [p for p in parts if not (isinstance(p, Token) and p.type == "LOWER_NAME")]
        keys = [json.loads(k) if k.startswith('"') else int(k) for k in keys]
        return self._path(names, keys)

    def _path(self, names: list[str], keys: list[str | int]):
        context = self._context
        text = ".".join(names)
        if names[0] == context.name and len(names) > 1:
            names = names[1:]
        fields = context.fields
        if names[0] in context.parents and len(names) > 1:
            fields, names = context.parents[names[0]], names[1:]
        reader = fields.get(names[0])
        if reader is None:
            raise _Refused(f"unknown path {text!r} in the {context.name} context")
        rest = names[1:]
        if rest:
            if names[0] != "status" or rest not in (["code"], ["message"]):
                raise _Refused(f"unknown path {text!r} in the {context.name} context")
            keys = [rest[0], *keys]

        def read(item: Item, reader=reader, keys=tuple(keys)) -> Any:
            value = reader(item)
            for key in keys:
                value = _index(value, key)
            return value

        read.is_path = True
        return read

    def call(self, token: Token, *args):
        name = str(token)
        args = [a for a in args if a is not None]
        if name == "IsMatch":
            if len(args) != 2:
                raise _Refused(f"IsMatch takes 2 arguments (target, pattern), got {len(args)}")
            pattern = _literal_string(args[1])
            if pattern is None:
                raise _Refused("IsMatch's pattern must be a string literal")
            try:
                regex = compile_user_regex(pattern, "IsMatch")
            except ValueError as exc:
                raise _Refused(str(exc)) from None
            target = args[0]

            def is_match(item: Item) -> bool:
                text = _as_string(target(item))
                return text is not None and regex.found(text)

            return is_match
        if name == "IsRootSpan" and self._context.name == "span":
            if args:
                raise _Refused("IsRootSpan takes no arguments")
            return lambda item: not item.span.parent_span_id
        if name in ("HasAttrKeyOnDatapoint", "HasAttrOnDatapoint") and self._context.name == "metric":
            want = 1 if name == "HasAttrKeyOnDatapoint" else 2
            literals = [_literal_string(a) for a in args]
            if len(args) != want or None in literals:
                raise _Refused(f"{name} takes {want} string literal argument{'s' if want > 1 else ''}")
            return functools.partial(_has_attr_on_datapoint, literals[0], literals[1] if want == 2 else None)
        if name in _SUBSET:  # one of the subset's, called where it does not run
            raise _Refused(f"{name!r} runs only in the {_SUBSET[name]} context, not the {self._context.name} one")
        raise _Refused(_not_run(name) or f"unknown function {name!r} in the {self._context.name} context")

    # booleans
    def compare(self, left, op: Token, right):
        op = str(op)
        return lambda item: compare_values(left(item), op, right(item))

    def truth(self, value):
        if isinstance(value, _Const):
            if not isinstance(value.literal, bool):
                raise _Refused(f"a condition must be a boolean, got {_type_name(value.literal)}")
            return value
        if getattr(value, "is_path", False):
            raise _Refused("a path alone is not a condition: compare it (== nil, == true, ...)")

        def truth(item: Item) -> bool:
            result = _plain(value(item))
            if not isinstance(result, bool):
                raise OttlError(f"a condition must be a boolean, got {_type_name(result)}")
            return result

        return truth

    def not_(self, inner):
        return lambda item: not inner(item)

    def and_expr(self, *parts):
        return lambda item: all(part(item) for part in parts)

    def or_expr(self, *parts):
        return lambda item: any(part(item) for part in parts)


def _has_attr_on_datapoint(key: str, value: str | None, item: Item) -> bool:
    metric = item.metric
    kind = metric.WhichOneof("data")
    if kind is None:
        return False
    for point in getattr(metric, kind).data_points:
        for kv in point.attributes:
            if kv.key == key and (value is None or compare_values(kv.value, "==", value)):
                return True
    return False


Condition = Callable[[Item], bool]


# The contexts a signal's conditions may be in, the lowest level first: the one a condition is in is the
# lowest its paths name (`span.name and resource.attributes[...]` is a span condition).
SIGNAL_CONTEXTS = {"traces": ("spanevent", "span", "resource"), "metrics": ("datapoint", "metric", "resource"),
                   "logs": ("log", "resource")}
_SCOPE_PREFIXES = ("scope", "instrumentation_scope")


def infer_context(text: str, signal: str) -> str:
    """The context of a condition written with context-prefixed paths (`span.name`), as the Collector's
    `trace_conditions` / `metric_conditions` / `log_conditions` infer it. ValueError says why not."""
    tree = _syntax(text)
    firsts = {str(path.children[0]) for path in tree.find_data("path")}
    candidates = SIGNAL_CONTEXTS[signal]
    unprefixed = sorted(firsts - set(candidates) - set(_SCOPE_PREFIXES))
    if unprefixed:
        raise ValueError(f"path {unprefixed[0]!r} does not start with a context of {signal}: write "
                         f"{', '.join(c + '.' for c in candidates)} before it, or name the context "
                         "({context: ..., conditions: [...]})")
    for context in candidates:
        if context in firsts:
            return context
    if firsts & set(_SCOPE_PREFIXES):
        raise ValueError("the scope context is not supported: name a lower context's paths")
    raise ValueError("no path names a context to infer: name the context ({context: ..., conditions: [...]})")


_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"')
_CALLS = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(")
_OUTSIDE = "(outside the OTTL subset Vigil runs)"


def _syntax(text: str):
    try:
        return _PARSER.parse(text)
    except LarkError as exc:
        raise ValueError(_syntax_reason(text, exc)) from None


def _syntax_reason(text: str, exc: LarkError) -> str:
    """What is wrong with a condition the grammar refused, in the words of what was written."""
    outside_strings = _STRINGS.sub(lambda m: " " * len(m.group()), text)
    # A call of an OTTL function outside the subset, however its arguments are written (a list, a lambda).
    for call in _CALLS.finditer(outside_strings):
        reason = _not_run(call.group(1))
        if reason is not None:
            return reason
    # A quote left over once the strings are paired opens one that never closes.
    unpaired = outside_strings.find('"')
    if unpaired >= 0:
        column = unpaired - text.rfind("\n", 0, unpaired)
        return f"unterminated string starting at column {column}"
    if isinstance(exc, UnexpectedEOF):
        return "incomplete condition: it ends too early"
    if isinstance(exc, UnexpectedCharacters):
        found = text[exc.pos_in_stream]
    elif isinstance(exc, UnexpectedInput):
        token = getattr(exc, "token", None)
        if token is None or token.type == "$END":
            return "incomplete condition: it ends too early"
        found = str(token)
    else:
        return f"invalid condition: {exc}"
    # `a - b` stops at the '-', `a -1` at the number its sign was read into.
    if found and found[0] in "+-*/":
        return f"arithmetic (+ - * /) is outside the OTTL subset Vigil runs: {found[:1]!r} at column {exc.column}"
    return f"unexpected {found!r} at column {exc.column} {_OUTSIDE}"


@functools.lru_cache(maxsize=1024)
def parse(text: str, context: str) -> Condition:
    """Compile `text` for `context` (span, spanevent, metric, datapoint, log, resource).

    Raises ValueError with the reason when the condition is not OTTL or lies outside the subset.
    """
    tree = _syntax(text)
    try:
        compiled = _Compiler(CONTEXTS[context]).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, _Refused):
            raise ValueError(str(exc.orig_exc)) from None
        raise
    return compiled


__all__ = ["CONTEXTS", "SIGNAL_CONTEXTS", "Condition", "Item", "OttlError", "compare_values", "infer_context",
           "parse"]
