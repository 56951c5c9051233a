# Quick start: `make run` (the agent with config/vigil.yaml), `make demo` (the inference-app game day)
# and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run demo test install clean proto test-debs install-service uninstall-service

# setup.py builds agent/_otlpscan.c (the ml processor's wire scanner) and agent/_otlpjson.c (the OTLP/JSON
# writer) into the editable install.
C_SOURCES := agent/_otlpscan.c agent/_otlpjson.c
$(BIN)/vigil: pyproject.toml setup.py $(C_SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

# Test dependencies (rotel, the OpenTelemetry SDK exporters, pytest) come from the `test` extra.
$(VENV)/.test-deps: pyproject.toml setup.py $(C_SOURCES) $(BIN)/vigil
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/vigil

run: $(BIN)/vigil
	$(BIN)/vigil run -c config/vigil.yaml

# The inference-app demo (examples/inference_app/): what it runs on (scikit-learn, the SDK's OTLP
# exporter) from the `examples` extra, then the quick game day. DEMO_ARGS="--keep" leaves Vigil up.
$(VENV)/.examples-deps: pyproject.toml setup.py $(C_SOURCES) $(BIN)/vigil
	$(BIN)/pip install --quiet -e '.[examples]'
	touch $@

demo: $(VENV)/.examples-deps
	$(BIN)/python examples/inference_app/demo.py --quick $(DEMO_ARGS)

# Debian packages some tests run for real: systemd-analyze (the unit), Prometheus (scraping Vigil), Alertmanager
# (receiving Vigil's alerts), Chromium (the status page), openssl (certificates for the TLS tests). apt-get runs
# only for what is missing
# (CI runs as root on Debian). TEST_DEB_LIBS, checked by package rather than by command: python3-venv for
# Triton's venv and Debian's libpython, which Triton's Python-backend stub embeds.
TEST_DEBS := systemd-analyze:systemd prometheus:prometheus prometheus-alertmanager:prometheus-alertmanager chromium:chromium openssl:openssl
DEBIAN_PYTHON := /usr/bin/python3
TEST_DEB_LIBS = python3-venv libpython$(shell $(DEBIAN_PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo 3.11)
test-debs:
	@missing=""; for pair in $(TEST_DEBS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	for package in $(TEST_DEB_LIBS); do \
	  dpkg-query -W -f='$${Status}' "$$package" 2>/dev/null | grep -q "ok installed" || missing="$$missing $$package"; done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	  echo "installing Debian packages for the tests:$$missing"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

# The real inference servers the tests run (tests/servers/), each in a venv of its own: they pin their own
# pydantic, fastapi and numpy. Triton's venv is made from Debian's Python, whose libpython its
# Python-backend stub is linked against (under a pyenv-built Python the stub fails to start).
.venv-triton/.deps: tests/servers/triton/requirements.txt | test-debs
	$(DEBIAN_PYTHON) -m venv .venv-triton
	.venv-triton/bin/pip install --quiet --upgrade pip
	.venv-triton/bin/pip install --quiet -r tests/servers/triton/requirements.txt
	touch $@

.venv-mlserver/.deps: tests/servers/mlserver/requirements.txt
	$(PYTHON) -m venv .venv-mlserver
	.venv-mlserver/bin/pip install --quiet --upgrade pip
	.venv-mlserver/bin/pip install --quiet -r tests/servers/mlserver/requirements.txt
	touch $@

REAL_SERVERS := .venv-triton/.deps .venv-mlserver/.deps
.PHONY: real-servers
real-servers: $(REAL_SERVERS)

# VIGIL_REAL_SERVERS=1: a real server that is missing or does not start fails its tests instead of skipping.
test: $(VENV)/.test-deps test-debs $(REAL_SERVERS)
	VIGIL_REAL_SERVERS=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

# Vigil as a systemd service: /opt/vigil/venv, /etc/vigil/vigil.yaml, /etc/systemd/system/vigil.service.
install-service:
	sh systemd/install.sh

# Removes the service and /opt/vigil; keeps /etc/vigil and the state (PURGE=1 removes them too).
uninstall-service:
	sh systemd/uninstall.sh $(if $(PURGE),--purge)

# Regenerates agent/proto/ from proto/ (tests/test_proto_current.py fails while the committed code is stale).
proto: $(VENV)/.test-deps
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=agent/proto --pyi_out=agent/proto $(patsubst proto/%,%,$(wildcard proto/vigil/v1/*.proto))

clean:
	rm -rf $(VENV) .venv-triton .venv-mlserver build *.egg-info vigil-data agent/*.so

# bench/offline_engine.py's peers (NannyML, Evidently) in a venv of their own, never needed by the agent or its
# tests. pandas < 3: evidently 0.7.23 imports a helper that pandas 3 removed.
.venv-bench/.deps: pyproject.toml
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/pip install --quiet --upgrade pip
	.venv-bench/bin/pip install --quiet -e '.[parquet]' nannyml==0.13.1 evidently==0.7.23 pandas==2.3.3
	touch $@

.PHONY: bench-deps
bench-deps: .venv-bench/.deps
