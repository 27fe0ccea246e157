#!/usr/bin/env bash
# Sets up ./.venv if needed, then sweeps prompts/ x two seeds against the bundled Wiro emulator into demo-out/,
# and ends by printing the command that opens its report.
source "$(dirname "$0")/bootstrap.sh"
status=0
wiro-sweep run prompts/ --axis seed=1,2 --out demo-out --emulator --poll-interval 1 "$@" || status=$?
if [ -f demo-out/report.html ]; then
    echo
    echo "Next, open the report (wiro-sweep is in .venv/bin/; or run 'source .venv/bin/activate' first):"
    echo "  .venv/bin/wiro-sweep serve demo-out    # then open http://127.0.0.1:4201/"
    echo "  or open demo-out/report.html in a browser"
fi
exit "$status"
