"""Loading and checking the YAML config.

The shape is the OpenTelemetry Collector's: `receivers`, `processors` and
`exporters` define components by id (`type` or `type/name`), and
`service.pipelines` wires them per signal. `${env:NAME}` and
`${env:NAME:-default}` are replaced in every string value, `$$` is a literal
`$`. Every problem is reported with the file and the YAML path of the field,
all at once, so one run of `vigil validate` shows everything to fix.
"""

from __future__ import annotations

import io
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from agent.component import ComponentId, Factory, Kind
from agent.configmodel import Duration, StrictModel, format_validation_error, join_path
from agent.netconfig import listen_endpoint, split_host_port
from agent.signals import Signal

log = logging.getLogger("vigil.config")


# --- the document ------------------------------------------------------------


class PipelineConfig(StrictModel):
    receivers: list[str] = Field(min_length=1)
    processors: list[str] = []
    exporters: list[str] = Field(min_length=1)


class LogSamplingConfig(StrictModel):
    # The Collector's zap sampling; accepted, ignored (see LogsTelemetryConfig.warnings).
    enabled: bool = True
    tick: Duration = 10.0
    initial: int = 10
    thereafter: int = 100


class LogsTelemetryConfig(StrictModel):
    # dpanic, panic and fatal (zap's) log as error, error and critical.
    level: Literal["debug", "info", "warn", "warning", "error", "dpanic", "panic", "fatal"] = "info"
    # Under systemd, lines carry no timestamp (journald adds its own) and a <priority> prefix.
    encoding: Literal["console", "json", "logfmt"] = "console"
    # Fields added to every line (json and logfmt as keys, console at the end).
    initial_fields: dict[str, Any] = {}
    # Where lines go: stderr, stdout or file paths.
    output_paths: list[str] = Field(default_factory=lambda: ["stderr"], min_length=1)
    # The rest is zap's, accepted so Collector configs load; each set one is a warning.
    error_output_paths: list[str] = Field(default_factory=lambda: ["stderr"])
    development: bool = False
    disable_caller: bool = False
    disable_stacktrace: bool = False
    sampling: LogSamplingConfig | None = None

    def warnings(self) -> list[str]:
        ignored = [name for name in ("development", "disable_caller", "disable_stacktrace")
                   if getattr(self, name)]
        if self.error_output_paths != ["stderr"]:
            ignored.append("error_output_paths (errors go where output_paths says)")
        if self.sampling is not None and self.sampling.enabled:
            ignored.append("sampling (Vigil summarises its repeated log lines itself)")
        return [f"{name} is ignored" for name in ignored]


class PrometheusPullConfig(StrictModel):
    host: str = "localhost"
    port: int = Field(8888, ge=0, le=65535)
    # Accepted, ignored (warned): Vigil's exposition is always the same shape as admin /metrics.
    without_scope_info: bool = False
    without_type_suffix: bool = False
    without_units: bool = False
    with_resource_constant_labels: dict[str, Any] | None = None

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class PullExporterConfig(StrictModel):
    prometheus: PrometheusPullConfig


class PullReaderConfig(StrictModel):
    exporter: PullExporterConfig


class MetricReaderConfig(StrictModel):
    pull: PullReaderConfig | None = None
    periodic: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _pull_only(self) -> MetricReaderConfig:
        if self.periodic is not None:
            raise ValueError("periodic readers (pushing Vigil's own metrics) are not supported: use a pull "
                             "reader, or scrape the admin endpoint's /metrics with a prometheus receiver")
        if self.pull is None:
            raise ValueError("a reader needs pull: {exporter: {prometheus: {host, port}}}")
        return self


class MetricsTelemetryConfig(StrictModel):
    """Vigil's own metrics (admin /metrics), also served where `readers` or `address` say."""

    # none: not served at `readers` or `address`; the others all serve every metric Vigil has.
    level: Literal["none", "basic", "normal", "detailed"] = "normal"
    # The Collector's older form of one pull reader, host:port. Unlike the Collector, nothing
    # listens on :8888 unless a reader or the address is set (the admin endpoint has /metrics).
    address: str | None = None
    readers: list[MetricReaderConfig] = []

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return None if value is None else listen_endpoint(value)

    def endpoints(self) -> list[str]:
        """The host:port addresses that serve /metrics."""
        if self.level == "none":
            return []
        readers = [r.pull.exporter.prometheus.endpoint for r in self.readers if r.pull is not None]
        return ([self.address] if self.address else []) + readers

    def warnings(self) -> list[str]:
        out = []
        if self.level == "none" and (self.address or self.readers):
            out.append("level: none turns Vigil's own metrics off here: address and readers are not served")
        for i, reader in enumerate(self.readers):
            prometheus = reader.pull.exporter.prometheus if reader.pull else None
            if prometheus is not None:
                for name in ("without_scope_info", "without_type_suffix", "without_units",
                             "with_resource_constant_labels"):
                    if getattr(prometheus, name):
                        out.append(f"readers[{i}].pull.exporter.prometheus.{name} is ignored")
        return out


class TelemetryConfig(StrictModel):
    logs: LogsTelemetryConfig = LogsTelemetryConfig()
    metrics: MetricsTelemetryConfig = MetricsTelemetryConfig()
    # The Collector's own traces and resource attributes have no counterpart in Vigil.
    traces: dict[str, Any] | None = None
    resource: dict[str, Any] | None = None

    def warnings(self) -> list[str]:
        out = [f"logs.{w}" for w in self.logs.warnings()] + [f"metrics.{w}" for w in self.metrics.warnings()]
        if self.traces is not None:
            out.append("traces is ignored: Vigil does not trace itself")
        if self.resource is not None:
            out.append("resource is ignored: Vigil's own metrics carry service.name=vigil")
        return out


class AdminConfig(StrictModel):
    """The admin HTTP endpoint: health, readiness, /metrics, the JSON API, the status page, reload."""

    # Loopback by default: it can reload the agent. null turns the endpoint off.
    endpoint: str | None = "127.0.0.1:13133"

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None else listen_endpoint(value)


class ServiceConfig(StrictModel):
    pipelines: dict[str, PipelineConfig] = Field(min_length=1)
    # Ids from `extensions:` to run (started before the pipelines, stopped after).
    extensions: list[str] = []
    telemetry: TelemetryConfig = TelemetryConfig()
    admin: AdminConfig = AdminConfig()  # `admin: null` turns it off, as `admin: {endpoint: null}`
    # How long shutdown may take in all: processors flush, exporters drain their queues.
    shutdown_timeout: Duration = 30.0
    # What must survive a restart lives here; under systemd, StateDirectory= sets STATE_DIRECTORY.
    state_dir: str = Field(default_factory=lambda: _default_state_dir())
    # Where a trace id leads (the status page, alerts): e.g. Jaeger's http://jaeger:16686/trace/{trace_id}.
    trace_view_url: str | None = None

    @field_validator("trace_view_url")
    @classmethod
    def _trace_placeholder(cls, value: str | None) -> str | None:
        if value is not None and "{trace_id}" not in value:
            raise ValueError("must contain {trace_id} (and may contain {span_id})")
        return value

    @field_validator("admin", mode="before")
    @classmethod
    def _admin_off(cls, value: Any) -> Any:
        return {"endpoint": None} if value is None else value


def _default_state_dir() -> str:
    systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return systemd or "./vigil-data/state"


class _Document(StrictModel):
    receivers: dict[str, dict[str, Any] | None] = {}
    processors: dict[str, dict[str, Any] | None] = {}
    exporters: dict[str, dict[str, Any] | None] = {}
    extensions: dict[str, dict[str, Any] | None] = {}
    # Vigil has no connectors; each is named as missing (a processor like `ml` derives data instead).
    connectors: dict[str, Any] = {}
    service: ServiceConfig


@dataclass(frozen=True)
class Pipeline:
    """One resolved pipeline: `traces`, `metrics/ml`, ..."""

    id: ComponentId
    signal: Signal
    receivers: tuple[ComponentId, ...]
    processors: tuple[ComponentId, ...]
    exporters: tuple[ComponentId, ...]
    # Processors listed among the receivers: what they derive enters this pipeline.
    derived_from: tuple[ComponentId, ...] = ()


@dataclass(frozen=True)
class Component:
    id: ComponentId
    factory: Factory
    config: BaseModel


@dataclass
class VigilConfig:
    """A checked config: every component's typed config and the resolved pipelines."""

    source: str
    components: dict[tuple[Kind, ComponentId], Component]
    pipelines: dict[ComponentId, Pipeline]
    service: ServiceConfig
    warnings: list[str] = field(default_factory=list)
    # The extensions `service.extensions` runs, in its order.
    extensions: tuple[ComponentId, ...] = ()

    def component(self, kind: Kind, id: ComponentId) -> Component:
        return self.components[(kind, id)]


class ConfigError(Exception):
    """The config is not valid; `problems` holds one `path: what is wrong` per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


# --- environment substitution ------------------------------------------------

_REFERENCE = re.compile(r"\$\$|\$\{([^}]*)\}")
_ENV_REFERENCE = re.compile(r"env:([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.S)


def _substitute(value: Any, path: str, problems: list[str], environ: dict[str, str],
                source: str = "<config>") -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, join_path(path, str(k)), problems, environ, source) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{path}[{i}]", problems, environ, source) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        ref = _ENV_REFERENCE.fullmatch(match.group(1))
        if ref is None:
            problems.append(f"{path}: unsupported reference {match.group(0)!r}: use ${{env:NAME}} "
                            f"or ${{env:NAME:-default}} (and $$ for a literal $)")
            return match.group(0)
        name, default = ref.group(1), ref.group(2)
        if name in environ:
            return environ[name]
        if default is None:
            # As the Collector does: an unset variable becomes empty, with a warning.
            log.warning("%s: %s: environment variable %s is not set; using an empty value",
                        source, path, name)
            return ""
        return default

    # The result stays a string, as in the Collector: a field that wants a number or a bool
    # converts it (`${env:PORT}` into a port), a string field keeps it exactly (a key of digits).
    return _REFERENCE.sub(replace, value)


# --- loading -----------------------------------------------------------------


def load(path: str | os.PathLike) -> VigilConfig:
    """Read, substitute and check the config file at `path`."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    return parse(text, source)


def parse(text: str, source: str = "<config>", environ: dict[str, str] | None = None) -> VigilConfig:
    stream = io.StringIO(text)
    stream.name = source  # so YAML's error marks name the file
    try:
        raw = yaml.safe_load(stream)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML: {exc}"]) from None
    return from_dict(raw, source, environ)


def from_dict(raw: Any, source: str = "<config>", environ: dict[str, str] | None = None) -> VigilConfig:
    if not isinstance(raw, dict):
        raise ConfigError(source, ["the config must be a mapping with receivers, processors, "
                                   "exporters and service"])
    problems: list[str] = []
    raw = _substitute(raw, "", problems, dict(os.environ) if environ is None else environ, source)
    document_problems: list[str] = []
    try:
        document: _Document | None = _Document.model_validate(raw)
    except ValidationError as exc:
        # Still check every component below, so one run reports everything to fix.
        document, document_problems = None, format_validation_error(exc, "")

    from agent import registry  # the registry imports every component module

    components: dict[tuple[Kind, ComponentId], Component] = {}
    for kind in (Kind.RECEIVER, Kind.PROCESSOR, Kind.EXPORTER, Kind.EXTENSION):
        if document is not None:
            section = getattr(document, kind.section)
        else:  # the document's errors already name a section or a body that is not a mapping
            given = raw.get(kind.section)
            section = {k: v for k, v in (given.items() if isinstance(given, dict) else ())
                       if isinstance(k, str) and (v is None or isinstance(v, dict))}
        for key, body in section.items():
            path = f"{kind.section}.{key}"
            try:
                cid = ComponentId.parse(key)
            except ValueError as exc:
                problems.append(f"{path}: {exc}")
                continue
            factory = registry.lookup(kind, cid.type)
            if factory is None:
                known = ", ".join(registry.types(kind))
                problems.append(f"{path}: unknown {kind.value} type {cid.type!r} (available: {known})")
                continue
            try:
                model = factory.config_model.model_validate(body or {})
            except ValidationError as exc:
                problems.extend(format_validation_error(exc, path))
                continue
            components[(kind, cid)] = Component(cid, factory, model)
    connectors = raw.get("connectors") if document is None else document.connectors
    for key in connectors if isinstance(connectors, dict) else ():
        problems.append(f"connectors.{key}: Vigil has no connectors (a processor that derives data, "
                        f"like ml, is listed among a pipeline's receivers instead)")
    if document is None:
        raise ConfigError(source, problems + document_problems)
    # Ids that failed their own checks are still "defined" for the pipeline checks below, and a
    # connector is both a receiver and an exporter: its one problem above is all that is said of it.
    connector_ids = set(document.connectors)
    raw_ids = {Kind.RECEIVER: set(document.receivers) | connector_ids, Kind.PROCESSOR: set(document.processors),
               Kind.EXPORTER: set(document.exporters) | connector_ids}

    pipelines: dict[ComponentId, Pipeline] = {}
    used: set[tuple[Kind, ComponentId]] = set()
    for key, spec in document.service.pipelines.items():
        path = f"service.pipelines.{key}"
        try:
            pid = ComponentId.parse(key)
            signal = Signal(pid.type)
        except ValueError:
            problems.append(f"{path}: a pipeline id is traces, metrics or logs, optionally "
                            f"followed by /name (got {key!r})")
            continue
        resolved: dict[Kind, list[ComponentId]] = {}
        derived: list[ComponentId] = []
        for kind, names in ((Kind.RECEIVER, spec.receivers), (Kind.PROCESSOR, spec.processors),
                            (Kind.EXPORTER, spec.exporters)):
            ids = resolved[kind] = []
            for i, name in enumerate(names):
                where = f"{path}.{kind.section}[{i}]"
                if name in names[:i]:
                    problems.append(f"{where}: {kind.value} {name!r} is listed twice")
                    continue
                if kind is Kind.RECEIVER and name not in raw_ids[kind] and name in raw_ids[Kind.PROCESSOR]:
                    # A processor that derives data (like `ml`) feeds the pipelines that list it here.
                    cid = ComponentId.parse(name)
                    derived.append(cid)
                    component = components.get((Kind.PROCESSOR, cid))
                    if component is not None and signal not in component.factory.emits:
                        problems.append(f"{where}: processor {name!r} does not produce {signal.value}")
                    continue
                if name not in raw_ids[kind]:
                    problems.append(f"{where}: {kind.value} {name!r} is not defined in {kind.section}")
                    continue
                cid = ComponentId.parse(name)
                if name in connector_ids:
                    continue
                ids.append(cid)
                used.add((kind, cid))
                component = components.get((kind, cid))
                if component is not None and signal not in component.factory.signals:
                    problems.append(f"{where}: {kind.value} {name!r} does not support {signal.value}")
                elif component is not None and hasattr(component.config, "signal_problem"):
                    # A config whose keys hold only for some signals (attributes' span_names, ...) says so.
                    problem = component.config.signal_problem(signal)
                    if problem:
                        problems.append(f"{where}: {kind.value} {name!r}: {problem}")
        pipelines[pid] = Pipeline(pid, signal, tuple(resolved[Kind.RECEIVER]),
                                  tuple(resolved[Kind.PROCESSOR]), tuple(resolved[Kind.EXPORTER]),
                                  tuple(derived))

    in_pipelines = {cid for p in pipelines.values() for cid in p.processors}
    for p in pipelines.values():
        for cid in p.derived_from:
            if cid not in in_pipelines:
                problems.append(f"service.pipelines.{p.id}.receivers: processor '{cid}' is listed as a "
                                f"receiver but is in no pipeline's processors, so it never sees data")

    extensions = _enabled_extensions(document, components, used, problems)
    components = _resolve_storage(components, document.service.state_dir, extensions, problems)
    if problems:
        raise ConfigError(source, problems)
    warnings = [f"{kind.section}.{cid}: defined but not used in any pipeline" if kind is not Kind.EXTENSION
                else f"extensions.{cid}: defined but not listed in service.extensions, so it does not run"
                for (kind, cid) in components if (kind, cid) not in used]
    warnings += [f"{kind.section}.{cid}: {w}" for (kind, cid), c in components.items()
                 if (kind, cid) in used for w in _warnings_of(c.config)]
    warnings += [f"service.telemetry.{w}" for w in document.service.telemetry.warnings()]
    warnings += _health_check_on_admin(components, extensions, document.service)
    return VigilConfig(source, components, pipelines, document.service, warnings, extensions)


def _warnings_of(model: BaseModel) -> list[str]:
    """What a component's config accepts but ignores: its `warnings()`, where it has one."""
    warnings = getattr(model, "warnings", None)
    return list(warnings()) if callable(warnings) else []


def _enabled_extensions(document: _Document, components: dict, used: set, problems: list[str]) -> tuple:
    """The ids `service.extensions` lists, each checked to be defined under `extensions:`."""
    enabled: list[ComponentId] = []
    names = document.service.extensions
    for i, name in enumerate(names):
        where = f"service.extensions[{i}]"
        if name in names[:i]:
            problems.append(f"{where}: extension {name!r} is listed twice")
        elif name not in document.extensions:
            problems.append(f"{where}: extension {name!r} is not defined in extensions")
        else:
            cid = ComponentId.parse(name)
            used.add((Kind.EXTENSION, cid))
            if (Kind.EXTENSION, cid) in components:
                enabled.append(cid)
    return tuple(enabled)


def _resolve_storage(components: dict, state_dir: str, extensions: tuple, problems: list[str]) -> dict:
    """Give each `sending_queue.storage: file_storage/NAME` a directory under that extension's.

    The queue then reads a plain directory; fsync follows the extension's setting.
    """
    from agent.extensions.file_storage import queue_directory, storage_directory

    resolved = dict(components)
    for (kind, cid), component in components.items():
        queue = getattr(component.config, "sending_queue", None)
        storage = getattr(queue, "storage", None)
        if kind is not Kind.EXPORTER or storage is None or storage.extension is None:
            continue
        where = f"exporters.{cid}.sending_queue.storage"
        sid = ComponentId.parse(storage.extension)
        extension = components.get((Kind.EXTENSION, sid))
        if extension is None:
            problems.append(f"{where}: extension {storage.extension!r} is not defined in extensions "
                            f"(or has errors above)")
            continue
        if sid.type != "file_storage":
            problems.append(f"{where}: extension {storage.extension!r} is not a storage: use a file_storage extension")
            continue
        if sid not in extensions:
            problems.append(f"{where}: extension {storage.extension!r} is not enabled: add it to service.extensions")
            continue
        directory = storage_directory(extension.config, str(sid), state_dir)
        if extension.config.directory is not None and not extension.config.create_directory \
                and not directory.is_dir():
            problems.append(f"extensions.{sid}.directory: {directory} does not exist "
                            f"(create it, or set create_directory: true)")
            continue
        update = {"directory": str(queue_directory(directory, str(cid)))}
        if "fsync" not in storage.model_fields_set:
            update["fsync"] = "always" if extension.config.fsync else "interval"
        queue = queue.model_copy(update={"storage": storage.model_copy(update=update)})
        resolved[(kind, cid)] = Component(cid, component.factory,
                                          component.config.model_copy(update={"sending_queue": queue}))
    return resolved


def _health_check_on_admin(components: dict, extensions: tuple, service: ServiceConfig) -> list[str]:
    from agent.extensions.health_check import listens_beside, shares_port

    out = []
    for cid in extensions:
        if cid.type != "health_check":
            continue
        component = components[(Kind.EXTENSION, cid)]
        endpoint, admin, path = component.config.endpoint, service.admin.endpoint, component.config.path
        if not shares_port(endpoint, admin):
            continue
        if listens_beside(endpoint, admin):
            out.append(f"extensions.{cid}: endpoint {endpoint} shares the admin endpoint's port ({admin}): "
                       f"the health check answers at {path} on every interface, the admin endpoint's page and "
                       f"API only on {split_host_port(admin)[0]}")
        else:
            out.append(f"extensions.{cid}: endpoint {endpoint} is the admin endpoint's ({admin}), which serves "
                       f"the health check at {path}")
    return out
