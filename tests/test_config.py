"""The config: `vigil validate`, `${env:...}` substitution, durations, and the checked result.

Each case under tests/testdata/config/ is one YAML file. `valid_*.yaml` must
validate; `invalid_*.yaml` must fail, and its `# error:` comment lines are the
exact lines `vigil validate` prints (`{file}` is the path given on the command
line, `{receivers}`/`{processors}`/`{exporters}` the registered types).
`# warning:` lines are what a case prints on stderr besides its errors.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from agent import config as config_module, registry
from agent.component import ComponentId, Kind
from agent.config import ConfigError, from_dict
from agent.configmodel import parse_duration
from agent.signals import Signal
from tests.vigil_cli import REPO, clean_env, run_cli

CASES = Path(__file__).parent / "testdata" / "config"
VALID = sorted(CASES.glob("valid_*.yaml"))
INVALID = sorted(p for p in CASES.glob("invalid_*.yaml") if p.name != "invalid_yaml_syntax.yaml")
# What valid_env.yaml reads; every CLI case runs with these set unless a test says otherwise.
CASE_ENV = {"VIGIL_TEST_HOST": "127.0.0.1", "VIGIL_TEST_PORT": "14317", "VIGIL_TEST_KEY": "abc"}


def _fill(template: str, file: str) -> str:
    known = {"{file}": file}
    for kind in Kind:
        known["{" + kind.section + "}"] = ", ".join(sorted(registry.factories(kind)))
    for placeholder, value in known.items():
        template = template.replace(placeholder, value)
    return template


def expected(path: Path, file: str, tag: str) -> list[str]:
    """The `# <tag>: ...` lines of a case, filled in."""
    prefix = f"# {tag}: "
    return [_fill(line[len(prefix):], file) for line in path.read_text().splitlines() if line.startswith(prefix)]


def validate(path: Path | str, **env: str):
    return run_cli("validate", "-c", str(path), env=clean_env(**{**CASE_ENV, **env}))


@pytest.fixture(scope="module")
def validated() -> dict[Path, object]:
    """`vigil validate` of every case, run side by side (each is a fresh interpreter)."""
    paths = VALID + INVALID
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(zip(paths, pool.map(validate, paths)))


def pipelines_text(count: int) -> str:
    return f"{count} pipeline" if count == 1 else f"{count} pipelines"


def pipeline_count(path: Path) -> int:
    return len(yaml.safe_load(path.read_text())["service"]["pipelines"])


# --- vigil validate: valid configs ------------------------------------------------------------------


def test_cases_exist():
    assert len(VALID) >= 5 and len(INVALID) >= 15


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_validate_accepts_valid_config(path, validated):
    result = validated[path]
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: valid ({pipelines_text(pipeline_count(path))})\n"
    # Only the warnings the case declares; none for most.
    assert result.stderr.splitlines() == expected(path, str(path), "warning")


def test_validate_accepts_the_shipped_default_config():
    path = REPO / "config" / "vigil.yaml"
    result = run_cli("validate", "-c", "config/vigil.yaml", cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"config/vigil.yaml: valid ({pipelines_text(pipeline_count(path))})\n"
    assert result.stderr == ""


@pytest.mark.parametrize("path", sorted((REPO / "config" / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_examples_validate(path):
    config = config_module.from_dict(yaml.safe_load(path.read_text()), str(path),
                                     environ={"SIGNOZ_INGESTION_KEY": "key"})
    assert config.warnings == []
    assert config.pipelines


def test_shipped_config_receives_on_the_standard_ports_and_tags_the_environment(monkeypatch):
    monkeypatch.delenv("VIGIL_ENVIRONMENT", raising=False)
    config = config_module.load(REPO / "config" / "vigil.yaml")
    otlp = config.component(Kind.RECEIVER, ComponentId("otlp")).config
    assert otlp.protocols.grpc.endpoint == "127.0.0.1:4317"
    assert otlp.protocols.http.endpoint == "127.0.0.1:4318"
    resource = config.component(Kind.PROCESSOR, ComponentId("resource")).config
    assert resource.attributes[0].value == "development"
    assert {p.signal for p in config.pipelines.values()} == set(Signal)
    assert config.warnings == []

    monkeypatch.setenv("VIGIL_ENVIRONMENT", "production")
    config = config_module.load(REPO / "config" / "vigil.yaml")
    assert config.component(Kind.PROCESSOR, ComponentId("resource")).config.attributes[0].value == "production"


def test_validate_warns_about_a_component_in_no_pipeline(validated):
    path = CASES / "valid_unused_component.yaml"
    result = validated[path]
    assert result.returncode == 0
    assert result.stderr == f"{path}: warning: exporters.debug: defined but not used in any pipeline\n"


def test_validate_through_python_dash_m():
    import subprocess
    import sys

    path = CASES / "valid_minimal.yaml"
    result = subprocess.run([sys.executable, "-m", "agent", "validate", "-c", str(path)], capture_output=True,
                            text=True, timeout=60, env=clean_env(), cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: valid (1 pipeline)\n"


# --- vigil validate: invalid configs ----------------------------------------------------------------


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_validate_rejects_invalid_config_with_exact_messages(path, validated):
    errors = expected(path, str(path), "error")
    assert errors, f"{path.name} declares no '# error:' lines"
    result = validated[path]
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == expected(path, str(path), "warning") + errors


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_load_raises_config_error_with_the_same_problems(path, monkeypatch):
    for name, value in CASE_ENV.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        config_module.load(path)
    errors = expected(path, str(path), "error")
    assert [f"{path}: {p}" for p in info.value.problems] == errors
    assert str(info.value) == "\n".join(errors)
    assert info.value.source == str(path)


def test_validate_reports_invalid_yaml_with_its_line():
    path = CASES / "invalid_yaml_syntax.yaml"
    result = validate(path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"{path}: not valid YAML: while parsing a flow sequence"
    # The missing `]` opened on line 10 and the parser gave up on line 11.
    assert "line 10, column 18" in result.stderr
    assert "expected ',' or ']', but got ':'" in result.stderr


def test_validate_reports_a_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    result = validate(path)
    assert result.returncode == 1
    assert result.stderr == f"{path}: cannot read the file: No such file or directory\n"


def test_validate_reports_an_empty_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here\n")
    result = validate(path)
    assert result.returncode == 1
    assert result.stderr == (f"{path}: the config must be a mapping with receivers, processors, "
                             f"exporters and service\n")


def test_validate_needs_a_config_argument():
    result = run_cli("validate")
    assert result.returncode == 2
    assert "the following arguments are required: -c/--config" in result.stderr


# --- environment substitution, through the CLI --------------------------------------------------------


def test_validate_substitutes_environment_variables():
    path = CASES / "valid_env.yaml"
    result = validate(path, VIGIL_TEST_PORT="notaport")
    # The port comes from the environment: a bad one is reported at the field it lands in.
    assert result.returncode == 1
    assert result.stderr == (f"{path}: receivers.otlp.protocols.grpc.endpoint: invalid endpoint "
                             f"'127.0.0.1:notaport': port must be a number from 0 to 65535\n")


def test_validate_warns_about_an_unset_variable_and_uses_an_empty_value():
    path = CASES / "valid_env.yaml"
    env = clean_env(**{k: v for k, v in CASE_ENV.items() if k != "VIGIL_TEST_KEY"})
    result = run_cli("validate", "-c", str(path), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == (f"{path}: exporters.otlp/signoz.headers.signoz-ingestion-key: environment "
                             f"variable VIGIL_TEST_KEY is not set; using an empty value\n")


def test_env_values_from_a_file_land_in_the_typed_config(monkeypatch):
    for name, value in {**CASE_ENV, "VIGIL_TEST_BATCH_SIZE": "64"}.items():
        monkeypatch.setenv(name, value)
    config = config_module.load(CASES / "valid_env.yaml")
    otlp = config.component(Kind.RECEIVER, ComponentId("otlp")).config
    assert otlp.protocols.grpc.endpoint == "127.0.0.1:14317"
    assert otlp.protocols.http.endpoint == "127.0.0.1:14318"  # the default of an unset variable
    assert config.component(Kind.PROCESSOR, ComponentId("batch")).config.send_batch_size == 64
    headers = config.component(Kind.EXPORTER, ComponentId("otlp", "signoz")).config.headers
    assert headers == {"signoz-ingestion-key": "abc", "x-price": "$5"}


# --- from_dict directly -------------------------------------------------------------------------------


def _doc(**sections) -> dict:
    doc = {"receivers": {"otlp": None}, "exporters": {"debug": None},
           "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}}}}
    doc.update(sections)
    return doc


def test_from_dict_resolves_named_components_and_pipelines():
    config = config_module.parse((CASES / "valid_named_components.yaml").read_text(), "named.yaml")
    assert config.source == "named.yaml"
    assert set(config.pipelines) == {ComponentId("traces"), ComponentId("traces", "2"),
                                     ComponentId("metrics", "backup"), ComponentId("logs")}
    second = config.pipelines[ComponentId("traces", "2")]
    assert second.signal is Signal.TRACES
    assert second.receivers == (ComponentId("otlp", "internal"), ComponentId("otlp"))
    assert second.processors == (ComponentId("batch", "fast"),)
    assert config.pipelines[ComponentId("metrics", "backup")].signal is Signal.METRICS
    traces = config.pipelines[ComponentId("traces")]
    assert traces.processors == (ComponentId("resource", "env"), ComponentId("batch"))
    assert traces.exporters == (ComponentId("otlp", "signoz"), ComponentId("otlp", "jaeger"),
                                ComponentId("file", "traces"))

    signoz = config.component(Kind.EXPORTER, ComponentId("otlp", "signoz"))
    assert signoz.factory.type == "otlp"
    assert signoz.config.endpoint == "ingest.us.signoz.cloud:443"
    assert signoz.config.headers == {"signoz-ingestion-key": "secret"}
    assert config.component(Kind.EXPORTER, ComponentId("otlphttp", "backup")).config.encoding == "json"
    fast = config.component(Kind.PROCESSOR, ComponentId("batch", "fast")).config
    assert (fast.timeout, fast.send_batch_size, fast.send_batch_max_size) == (0, 100, 200)
    # A component's defaults come from its model.
    assert config.component(Kind.PROCESSOR, ComponentId("batch")).config.timeout == pytest.approx(0.2)
    assert config.service.shutdown_timeout == 90
    assert config.service.telemetry.logs.level == "warn"
    assert config.service.telemetry.logs.encoding == "json"
    assert config.warnings == []


def test_from_dict_reports_every_problem_with_its_path():
    raw = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "localhost"}}}, "kafka": None},
        "processors": {"batch": {"timeout": "soon"}},
        "exporters": {"debug": None, "otlp": {"endpoint": "collector:4317", "compression": "zstd"}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                             "exporters": ["debug", "otlp/missing"]},
                                  "profiles": {"receivers": ["otlp"], "exporters": ["debug"]}}},
    }
    with pytest.raises(ConfigError) as info:
        from_dict(raw, "inline")
    receivers = ", ".join(sorted(registry.factories(Kind.RECEIVER)))
    assert info.value.problems == [
        "receivers.otlp.protocols.grpc.endpoint: invalid endpoint 'localhost': expected host:port",
        f"receivers.kafka: unknown receiver type 'kafka' (available: {receivers})",
        "processors.batch.timeout: invalid duration 'soon': use a number with a unit, e.g. 200ms, 10s, 5m",
        "exporters.otlp.compression: Input should be 'gzip', 'none' or '' (got 'zstd')",
        "service.pipelines.traces.exporters[1]: exporter 'otlp/missing' is not defined in exporters",
        "service.pipelines.profiles: a pipeline id is traces, metrics or logs, optionally followed by /name "
        "(got 'profiles')",
    ]
    assert str(info.value).splitlines()[0] == f"inline: {info.value.problems[0]}"


def test_from_dict_checks_components_even_when_the_document_is_malformed():
    raw = {"receivers": {"otlp": {"protocols": {"grpc": {"port": 4317}}}},
           "exporters": {"debug": {"verbosity": "loud"}},
           "service": {"pipelines": {"traces": {"receivers": ["otlp"]}}}, "extension": {}}
    with pytest.raises(ConfigError) as info:
        from_dict(raw)
    assert info.value.problems == [
        "receivers.otlp.protocols.grpc.port: unknown key",
        "exporters.debug.verbosity: Input should be 'basic', 'normal' or 'detailed' (got 'loud')",
        "service.pipelines.traces.exporters: required field is missing",
        "extension: unknown key",
    ]


def test_from_dict_rejects_a_config_that_is_not_a_mapping():
    for raw in (None, [], "receivers: {}"):
        with pytest.raises(ConfigError) as info:
            from_dict(raw, "x.yaml")
        assert info.value.problems == ["the config must be a mapping with receivers, processors, exporters "
                                       "and service"]


def test_from_dict_rejects_a_pipeline_without_receivers():
    doc = _doc(service={"pipelines": {"logs": {"receivers": [], "exporters": ["debug"]}}})
    with pytest.raises(ConfigError) as info:
        from_dict(doc)
    assert info.value.problems == ["service.pipelines.logs.receivers: List should have at least 1 item after "
                                   "validation, not 0"]


def test_from_dict_warns_about_each_unused_component():
    doc = _doc(processors={"batch": None, "batch/unused": None},
               exporters={"debug": None, "file/unused": {"path": "x.json"}},
               receivers={"otlp": None, "otlp/spare": None})
    config = from_dict(doc)
    assert config.warnings == [
        "receivers.otlp/spare: defined but not used in any pipeline",
        "processors.batch: defined but not used in any pipeline",
        "processors.batch/unused: defined but not used in any pipeline",
        "exporters.file/unused: defined but not used in any pipeline",
    ]


def test_from_dict_one_receiver_and_exporter_in_pipelines_of_every_signal():
    pipelines = {s: {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["debug"]}
                 for s in ("traces", "metrics", "logs", "logs/audit")}
    config = from_dict(_doc(processors={"batch": None}, service={"pipelines": pipelines}))
    assert [p.signal for p in config.pipelines.values()] == [Signal.TRACES, Signal.METRICS, Signal.LOGS,
                                                             Signal.LOGS]
    assert config.warnings == []


# --- environment substitution, directly -------------------------------------------------------------


def _exporter_config(raw_exporter: dict, environ: dict[str, str]):
    doc = _doc(exporters={"otlp": raw_exporter},
               service={"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp"]}}})
    return from_dict(doc, "env.yaml", environ).component(Kind.EXPORTER, ComponentId("otlp")).config


def test_env_reference_inside_a_value():
    config = _exporter_config({"endpoint": "${env:HOST}:${env:PORT}", "headers": {"a": "Bearer ${env:TOKEN}"}},
                              {"HOST": "signoz.internal", "PORT": "4317", "TOKEN": "t0k"})
    assert config.endpoint == "signoz.internal:4317"
    assert config.headers == {"a": "Bearer t0k"}


def test_env_default_applies_only_when_unset():
    raw = {"endpoint": "${env:HOST:-localhost}:${env:PORT:-4317}", "headers": {"e": "${env:EMPTY:-}"}}
    assert _exporter_config(raw, {}).endpoint == "localhost:4317"
    assert _exporter_config(raw, {"HOST": "h", "PORT": "1"}).endpoint == "h:1"
    assert _exporter_config(raw, {}).headers == {"e": ""}
    # A default may itself hold colons.
    assert _exporter_config({"endpoint": "${env:X:-http://a:1}"}, {}).endpoint == "http://a:1"


def test_double_dollar_is_a_literal_dollar():
    config = _exporter_config({"endpoint": "c:1", "headers": {"price": "$$5", "ref": "$${env:HOME}",
                                                              "two": "$$$$", "plain": "a$b"}}, {"HOME": "/root"})
    assert config.headers == {"price": "$5", "ref": "${env:HOME}", "two": "$$", "plain": "a$b"}


def test_unset_variable_becomes_empty_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="vigil.config"):
        config = _exporter_config({"endpoint": "c:1", "headers": {"x": "pre-${env:VIGIL_NOPE}-post"}}, {})
    assert config.headers == {"x": "pre--post"}
    assert [r.getMessage() for r in caplog.records] == [
        "env.yaml: exporters.otlp.headers.x: environment variable VIGIL_NOPE is not set; using an empty value"]


def test_unset_variable_as_a_whole_value_is_an_empty_string(caplog):
    config = _exporter_config({"endpoint": "c:1", "headers": {"x": "${env:VIGIL_NOPE}"}}, {})
    assert config.headers == {"x": ""}


def test_substituted_values_take_the_type_of_their_field():
    doc = _doc(processors={"batch": {"send_batch_size": "${env:SIZE}", "send_batch_max_size": "${env:MAX}"},
                           "resource": {"attributes": [
                               {"key": "shard", "value": "${env:SHARD}", "action": "insert"},
                               {"key": "label", "value": "shard-${env:SHARD}", "action": "insert"}]}},
               exporters={"otlp": {"endpoint": "c:1", "tls": {"insecure": "${env:INSECURE}"},
                                   "headers": {"api-key": "${env:KEY}", "flag": "${env:CANARY}"}}},
               service={"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch", "resource"],
                                                 "exporters": ["otlp"]}}})
    config = from_dict(doc, environ={"SIZE": "100", "MAX": "200", "SHARD": "7", "CANARY": "true",
                                     "INSECURE": "true", "KEY": "0123"})
    # Number and bool fields convert what the variable holds ...
    batch = config.component(Kind.PROCESSOR, ComponentId("batch")).config
    assert (batch.send_batch_size, batch.send_batch_max_size) == (100, 200)
    exporter = config.component(Kind.EXPORTER, ComponentId("otlp")).config
    assert exporter.tls.insecure is True
    # ... and string fields keep it exactly: a key of digits is not read as a (octal) number.
    assert exporter.headers == {"api-key": "0123", "flag": "true"}
    values = [a.value for a in config.component(Kind.PROCESSOR, ComponentId("resource")).config.attributes]
    assert values == ["7", "shard-7"]


def test_unsupported_references_are_errors():
    doc = _doc(exporters={"otlp": {"endpoint": "c:1", "headers": {"a": "${file:/run/key}", "b": "${HOME}",
                                                                  "c": "${env:1BAD}"}}},
               service={"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp"]}}})
    with pytest.raises(ConfigError) as info:
        from_dict(doc, environ={"HOME": "/root"})
    hint = "use ${env:NAME} or ${env:NAME:-default} (and $$ for a literal $)"
    assert info.value.problems == [
        f"exporters.otlp.headers.a: unsupported reference '${{file:/run/key}}': {hint}",
        f"exporters.otlp.headers.b: unsupported reference '${{HOME}}': {hint}",
        f"exporters.otlp.headers.c: unsupported reference '${{env:1BAD}}': {hint}",
    ]


def test_env_substitution_reaches_lists_and_pipelines():
    doc = _doc(service={"pipelines": {"traces": {"receivers": ["${env:RECEIVER}"], "exporters": ["debug"]}}})
    config = from_dict(doc, environ={"RECEIVER": "otlp"})
    assert config.pipelines[ComponentId("traces")].receivers == (ComponentId("otlp"),)


# --- durations ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [
    ("200ms", 0.2), ("10s", 10.0), ("5m", 300.0), ("1m30s", 90.0), ("1.5s", 1.5), ("1h", 3600.0),
    ("2h45m", 9900.0), ("500us", 0.0005), ("750ns", 7.5e-7), (".5s", 0.5), (" 3s ", 3.0),
    ("0", 0.0), (0, 0.0), (0.0, 0.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["10", 10, 1.5, "5x", "", "   ", "s", "ms10", "-1s", "1m 30s", "10S",
                                   "1.5", True, None, [1]])
def test_parse_duration_rejects(value):
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert str(info.value) == f"invalid duration {value!r}: use a number with a unit, e.g. 200ms, 10s, 5m"


def test_durations_in_a_config_are_seconds():
    config = config_module.load(CASES / "valid_durations.yaml")
    timeouts = {str(cid): c.config.timeout for (kind, cid), c in config.components.items()
                if kind is Kind.PROCESSOR}
    assert timeouts == pytest.approx({"batch/ms": 0.2, "batch/s": 10.0, "batch/m": 300.0, "batch/mixed": 90.0,
                                      "batch/fraction": 1.5, "batch/zero": 0.0})
    otlp = config.component(Kind.EXPORTER, ComponentId("otlp")).config
    assert otlp.timeout == pytest.approx(2.5)
    retry = otlp.retry_on_failure
    assert (retry.initial_interval, retry.max_interval, retry.max_elapsed_time) == pytest.approx((0.5, 60, 3600))


def test_bad_duration_in_service_section():
    doc = _doc()
    doc["service"]["shutdown_timeout"] = "30"
    with pytest.raises(ConfigError) as info:
        from_dict(doc)
    assert info.value.problems == [
        "service.shutdown_timeout: invalid duration '30': use a number with a unit, e.g. 200ms, 10s, 5m"]


def test_an_endpoint_written_port_only_listens_on_every_interface():
    # Go's ":port", which Collector configs use, is every interface: the receivers', the prometheus
    # exporter's, the health check's, the telemetry address's and the admin endpoint's.
    loaded = from_dict(yaml.safe_load("""
receivers:
  otlp: {protocols: {grpc: {endpoint: ":4317"}, http: {endpoint: ":4318"}}}
exporters:
  prometheus: {endpoint: ":8889"}
extensions:
  health_check: {endpoint: ":13134"}
service:
  extensions: [health_check]
  admin: {endpoint: ":13133"}
  telemetry: {metrics: {address: ":8888"}}
  pipelines: {metrics: {receivers: [otlp], exporters: [prometheus]}}
"""))
    def config_of(kind: Kind, name: str):
        return loaded.component(kind, ComponentId(name)).config

    otlp = config_of(Kind.RECEIVER, "otlp").protocols
    assert (otlp.grpc.endpoint, otlp.http.endpoint) == ("0.0.0.0:4317", "0.0.0.0:4318")
    assert config_of(Kind.EXPORTER, "prometheus").endpoint == "0.0.0.0:8889"
    assert config_of(Kind.EXTENSION, "health_check").endpoint == "0.0.0.0:13134"
    assert loaded.service.admin.endpoint == "0.0.0.0:13133"
    assert loaded.service.telemetry.metrics.address == "0.0.0.0:8888"
