#!/usr/bin/env bash
# Sets up ./.venv if needed, starts the bundled Wiro emulator, and runs examples/quickstart.py against it.
source "$(dirname "$0")/bootstrap.sh"
export WIRO_API_KEY=demo-key WIRO_API_SECRET=demo-secret
port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
wiro-sweep emulator --port "$port" --task-seconds 2 >/dev/null 2>&1 &
emulator=$!
trap 'kill $emulator' EXIT
export WIRO_BASE_URL="http://127.0.0.1:$port/v1"
until python -c "import httpx; httpx.get('http://127.0.0.1:$port/_emulator/stats')" 2>/dev/null; do sleep 0.2; done
mkdir -p demo-out && cd demo-out
python ../examples/quickstart.py
