#!/usr/bin/env bash
# Sets up ./.venv if needed, then runs the linters, the type checker and the whole test suite.
source "$(dirname "$0")/bootstrap.sh"
ruff check .
ruff format --check .
mypy
pytest "$@"
