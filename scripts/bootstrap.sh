# Sourced by the other scripts: makes ./.venv with the project and its dev tools, once per pyproject change.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    started=$SECONDS
    if [ ! -x .venv/bin/python ]; then
        echo "Setting up .venv: installing wiro-sweep with Prefect and its dev tools (first run only; about 2 minutes)..." >&2
        "$PYTHON" -m venv .venv
    else
        echo "pyproject.toml changed: updating .venv (under a minute)..." >&2
    fi
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[dev]'
    rm -f .venv/.installed-*
    touch "$stamp"
    echo ".venv is ready ($((SECONDS - started)) s)." >&2
fi
export PATH="$PWD/.venv/bin:$PATH"
