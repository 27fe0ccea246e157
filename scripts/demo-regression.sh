#!/usr/bin/env bash
# A regression report on the emulator: sweeps prompts/ again on an emulator at model version 2
# (some videos re-encoded or redrawn, some tasks failing or 3x slower) into demo-out-next/, then
# compares it with demo-out/ from ./scripts/demo.sh: demo-out-next/compare.html.
source "$(dirname "$0")/bootstrap.sh"
[ -f demo-out/manifest.parquet ] || ./scripts/demo.sh
PORT="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export WIRO_API_KEY="demo-$(python -c 'import secrets; print(secrets.token_hex(8))')"
export WIRO_API_SECRET="$(python -c 'import secrets; print(secrets.token_hex(16))')"
export WIRO_BASE_URL="http://127.0.0.1:$PORT/v1" WIRO_SOCKET_URL="ws://127.0.0.1:$PORT/socket/v1"
wiro-sweep emulator --port "$PORT" --model-version 2 --task-seconds 3 >demo-emulator.log 2>&1 &
emulator=$!
trap 'kill "$emulator" 2>/dev/null; wait "$emulator" 2>/dev/null || true' EXIT
until python -c "import httpx; httpx.get('http://127.0.0.1:$PORT/_emulator/stats')" 2>/dev/null; do
    kill -0 "$emulator" 2>/dev/null || { cat demo-emulator.log >&2; exit 1; }
    sleep 0.2
done
echo "Emulator at model version 2 on $WIRO_BASE_URL" >&2
# Exit code 1 is expected from both: version 2 fails some rows, and the compare finds regressions.
wiro-sweep run prompts/ --axis seed=1,2 --out demo-out-next --poll-interval 1 "$@" || [ $? -eq 1 ]
wiro-sweep compare demo-out demo-out-next || [ $? -eq 1 ]
echo "Open demo-out-next/compare.html in a browser: regressions first, then the videos that changed." >&2
