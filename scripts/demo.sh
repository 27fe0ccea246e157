#!/usr/bin/env bash
# Sets up ./.venv if needed, then sweeps prompts/ x two seeds against the bundled Wiro emulator into demo-out/.
source "$(dirname "$0")/bootstrap.sh"
wiro-sweep run prompts/ --axis seed=1,2 --out demo-out --emulator --poll-interval 1 "$@"
