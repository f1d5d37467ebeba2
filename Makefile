# Two commands do all the set-up on a fresh clone:
#   make serve   install (first time), assemble the default model, serve it on 127.0.0.1:8000
#   make test    install (first time), then run the whole test suite
# Extra flags: make serve ARGS="--port 9000 --api-key sk-local"; make test PYTEST_ARGS="-k chat"

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=

.PHONY: serve test install bench lint

install:
	@PYTHON=$(PYTHON) scripts/install.sh

serve: install
	$(BIN)/pampero serve --config configs/default.yaml $(ARGS)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/bench_serving.py --write docs/benchmarks.md

lint: install
	$(BIN)/ruff check pampero tests benchmarks
	$(BIN)/mypy
