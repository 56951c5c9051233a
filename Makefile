# Quick start: `make run` (the agent with config/vigil.yaml) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test install clean proto

$(BIN)/vigil: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

# Test dependencies (rotel, the OpenTelemetry SDK exporters, pytest) come from the `test` extra.
$(VENV)/.test-deps: pyproject.toml $(BIN)/vigil
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/vigil

run: $(BIN)/vigil
	$(BIN)/vigil run -c config/vigil.yaml

test: $(VENV)/.test-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Regenerates agent/proto/ from proto/ (tests/test_proto_current.py fails while the committed code is stale).
proto: $(VENV)/.test-deps
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=agent/proto --pyi_out=agent/proto $(patsubst proto/%,%,$(wildcard proto/vigil/v1/*.proto))

clean:
	rm -rf $(VENV) build *.egg-info vigil-data
