#!/usr/bin/env bash
# One entry point for a fresh checkout: makes the virtual environment when needed, then runs.
#   ./dev.sh test [pytest args]   run the test suite
#   ./dev.sh <ganpaint command>   e.g. ./dev.sh render --sample 104 --out out/
set -euo pipefail
cd "$(dirname "$0")"
VENV="${GANPAINT_VENV:-.venv}"
# The CPU build of PyTorch; override (e.g. GANPAINT_TORCH='torch==2.14.1') on other machines.
TORCH_SPEC="${GANPAINT_TORCH:-torch==2.13.0}"

ensure_env() {
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    local stamp="$VENV/.ganpaint-installed"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        "$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC"
        "$VENV/bin/python" -m pip install --quiet -e '.[test]'
        touch "$stamp"
    fi
}

ensure_env
case "${1:-}" in
    test)
        shift
        exec "$VENV/bin/python" -m pytest -q "$@"
        ;;
    "")
        exec "$VENV/bin/ganpaint" --help
        ;;
    *)
        exec "$VENV/bin/ganpaint" "$@"
        ;;
esac
