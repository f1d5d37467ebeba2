# Two commands do all the set-up on a fresh clone:
#   make serve   install the serve profile (first time), assemble the default model, serve it on
#                127.0.0.1:8000
#   make test    install the test profile (first time: serve's plus test, lint and benchmark
#                tools, every structured-output backend, the transformers engine), then lint
#                (ruff check, ruff format --check, mypy --strict) and run the suite
# Extra flags: make serve ARGS="--port 9000 --api-key sk-local"; make test PYTEST_ARGS="-k chat"

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=

.PHONY: serve test install install-serve bench lint

install:
	@PYTHON=$(PYTHON) scripts/install.sh test

install-serve:
	@PYTHON=$(PYTHON) scripts/install.sh serve

serve: install-serve
	$(BIN)/pampero serve --config configs/default.yaml $(ARGS)

test: install
	$(BIN)/ruff check pampero tests benchmarks scripts
	$(BIN)/ruff format --check pampero tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/bench_serving.py --write docs/benchmarks.md

lint: install
	$(BIN)/ruff check pampero tests benchmarks scripts
	$(BIN)/ruff format --check pampero tests benchmarks scripts
	$(BIN)/mypy
