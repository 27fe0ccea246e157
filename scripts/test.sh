#!/usr/bin/env bash
# Sets up ./.venv if needed (and Debian's Chromium for the report's browser test, when this
# machine can install it), then runs the linters, the type checker and the whole test suite.
source "$(dirname "$0")/bootstrap.sh"
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian's chromium for tests/test_report.py (once)..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
ruff check .
ruff format --check .
mypy
# Three workers, a test module each at a time (module fixtures such as test_server's stack start
# once), longest modules first (tests/conftest.py's LONGEST_FIRST): most tests wait on emulator time
# and subprocesses, so a third worker fills the time two cores would sit idle.
# `./scripts/test.sh -n 0 ...` runs in this one process instead.
pytest -n 3 --dist loadfile --no-loadscope-reorder "$@"
