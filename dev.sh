#!/usr/bin/env bash
# One entry point for a fresh checkout: makes the virtual environment when needed, then runs.
#   ./dev.sh test [pytest args]   run the test suite (from the repository root)
#   ./dev.sh lint                 ruff and mypy (configured in pyproject.toml)
#   ./dev.sh <ganpaint command>   e.g. ./dev.sh render --sample 104 --out out/
# Commands run in the caller's directory, so relative paths (--out, --run-dir) mean what they say.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")" && pwd)"
VENV="${GANPAINT_VENV:-$ROOT/.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
# PyTorch at the one version pinned in constraints.txt (also what the Docker images install);
# GANPAINT_TORCH overrides it for experiments (a pip requirement, e.g. a newer torch).
TORCH_SPEC="${GANPAINT_TORCH:-torch}"

ensure_env() {
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    local stamp="$VENV/.ganpaint-installed"
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] || [ "$ROOT/constraints.txt" -nt "$stamp" ]; then
        (
            cd "$ROOT"
            "$VENV/bin/python" -m pip install --quiet --upgrade pip
            if [ -n "${GANPAINT_TORCH:-}" ]; then
                "$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC"
                "$VENV/bin/python" -m pip install --quiet -e '.[dev,real,cluster]'
            else
                "$VENV/bin/python" -m pip install --quiet -c constraints.txt "$TORCH_SPEC"
                "$VENV/bin/python" -m pip install --quiet -c constraints.txt -e '.[dev,real,cluster]'
            fi
        )
        touch "$stamp"
    fi
}

ensure_env
case "${1:-}" in
    test)
        shift
        cd "$ROOT"
        exec "$VENV/bin/python" -m pytest -q "$@"
        ;;
    lint)
        cd "$ROOT"
        "$VENV/bin/ruff" check .
        exec "$VENV/bin/mypy"
        ;;
    "")
        exec "$VENV/bin/ganpaint" --help
        ;;
    *)
        exec "$VENV/bin/ganpaint" "$@"
        ;;
esac
