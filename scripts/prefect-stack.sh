#!/usr/bin/env bash
# The production setup in one command, on this machine: a PostgreSQL-backed Prefect server (SQLite
# when no PostgreSQL answers on 127.0.0.1:5432), the process work pool, the shared Wiro account
# limit, every deployment of deployments.yaml, $WORKERS workers, and the report server
# (`wiro-sweep serve runs/`) the runs' artifacts link to. Ctrl-C stops it all.
#   WORKERS=2 PORT=4200 REPORT_PORT=4201 WIRO_ACCOUNT_LIMIT=5 ./scripts/prefect-stack.sh
#   EMULATOR=1 EMULATOR_PORT=8765 ./scripts/prefect-stack.sh   # workers talk to a bundled emulator instead of Wiro
#   STOP_SECONDS=5                                             # Ctrl-C: SIGTERM to all, SIGKILL to what is left then
#   DATABASE=wiro_sweep                                        # the PostgreSQL database it uses (made if missing)
source "$(dirname "$0")/bootstrap.sh"
WORKERS="${WORKERS:-2}" PORT="${PORT:-4200}" LIMIT="${WIRO_ACCOUNT_LIMIT:-5}"
REPORT_PORT="${REPORT_PORT:-$((PORT + 1))}" EMULATOR_PORT="${EMULATOR_PORT:-8765}" DATABASE="${DATABASE:-wiro_sweep}"
export PREFECT_API_URL="http://127.0.0.1:$PORT/api" PREFECT_SERVER_ANALYTICS_ENABLED=false
if DATABASE="$DATABASE" python - <<'PY'
import asyncio, os, asyncpg
async def main():
    name = os.environ["DATABASE"]
    c = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="postgres", timeout=3)
    if not await c.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
        await c.execute(f'CREATE DATABASE "{name}"')
    await c.close()
asyncio.run(main())
PY
then
    export PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://postgres@127.0.0.1:5432/$DATABASE"
    echo "Prefect server on PostgreSQL (database $DATABASE)"
else
    echo "No PostgreSQL on 127.0.0.1:5432: the Prefect server uses SQLite (fine for trying, not for load)"
fi
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for taken in "$PORT" "$REPORT_PORT" ${EMULATOR:+"$EMULATOR_PORT"}; do
    if listening "$taken"; then   # another server would answer in its place (a README `serve`, an old stack)
        echo "error: port $taken is already in use (PORT=$PORT, REPORT_PORT=$REPORT_PORT${EMULATOR:+, EMULATOR_PORT=$EMULATOR_PORT}): stop what listens there, or choose another port" >&2
        exit 1
    fi
done
started() {  # NAME PID LOG PORT: wait until the server answers; fail loudly if it died instead
    until listening "$4"; do
        if ! kill -0 "$2" 2>/dev/null; then
            echo "error: the $1 did not start; the end of $3:" >&2
            tail -n 5 "$3" >&2
            exit 1
        fi
        sleep 0.2
    done
}
ENV_FILE="$PWD/prefect-stack.env"   # what a shell needs to sweep on this stack; gone when it stops
below() {  # PID: every process below it (children, theirs, ...), but the subshell asking and its `ps`
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        [ "$child" = "$BASHPID" ] || { echo "$child"; below "$child"; }
    done
}
spawn() {  # COMMAND...: in the background, in a process group of its own: a terminal's Ctrl-C reaches
    set -m  # this script alone, which stops them all (`stop`), instead of every worker at once
    "$@" &
    set +m
}
alive() { local each; for each in "$@"; do kill -0 -- "$each" 2>/dev/null && echo "$each"; done; }
stop() {  # CODE: end every process this stack started within STOP_SECONDS: SIGTERM, then SIGKILL
    trap - EXIT INT TERM
    set +e
    rm -f "$ENV_FILE"
    local targets left tries=$((${STOP_SECONDS:-5} * 5))
    # Each job's process group (what its processes started, even after their parent ended), and
    # whatever left it (a worker's flow runs, in sessions of their own).
    targets="$(for group in $(jobs -p); do echo "-$group"; done) $(below $$)"
    left=$(alive $targets)
    [ -n "$left" ] && kill -TERM -- $left 2>/dev/null
    while [ -n "$left" ] && [ "$tries" -gt 0 ]; do   # a worker may wait on its flow runs
        sleep 0.2
        left=$(alive $left)
        tries=$((tries - 1))
    done
    [ -n "$left" ] && kill -KILL -- $left 2>/dev/null
    wait 2>/dev/null
    exit "$1"
}
trap 'stop $?' EXIT
trap 'stop 130' INT
trap 'stop 143' TERM
if [ -n "${EMULATOR:-}" ]; then   # the emulator's own credentials, never a real key of yours
    export WIRO_API_KEY=stack-key WIRO_API_SECRET=stack-secret
    export WIRO_BASE_URL="http://127.0.0.1:$EMULATOR_PORT/v1" WIRO_SOCKET_URL="ws://127.0.0.1:$EMULATOR_PORT/socket/v1"
    spawn wiro-sweep emulator --port "$EMULATOR_PORT" >emulator.log 2>&1
fi
mkdir -p runs
spawn wiro-sweep serve runs --port "$REPORT_PORT" >report-server.log 2>&1
started "report server" $! report-server.log "$REPORT_PORT"
export WIRO_SWEEP_REPORT_URL="http://127.0.0.1:$REPORT_PORT"   # the workers' artifacts link to the report server
spawn prefect server start --host 127.0.0.1 --port "$PORT" >prefect-server.log 2>&1
until python -c "import httpx; httpx.get('$PREFECT_API_URL/health').raise_for_status()" 2>/dev/null; do sleep 1; done
prefect work-pool inspect wiro-sweep >/dev/null 2>&1 || prefect work-pool create wiro-sweep --type process
prefect global-concurrency-limit inspect wiro-account >/dev/null 2>&1 \
    || prefect global-concurrency-limit create wiro-account --limit "$LIMIT"
prefect --no-prompt deploy --prefect-file deployments.yaml --all
for n in $(seq 1 "$WORKERS"); do
    spawn prefect worker start --pool wiro-sweep --name "worker-$n" --limit 1 >"worker-$n.log" 2>&1
done
echo "Prefect UI: http://127.0.0.1:$PORT   API: $PREFECT_API_URL   workers: $WORKERS (logs: worker-*.log)"
echo "Reports: $WIRO_SWEEP_REPORT_URL/ serves runs/ (the deployments' OUTs); the runs' artifacts link there"
{
    echo "# This stack's settings for a shell of yours, written by scripts/prefect-stack.sh (removed when it stops)"
    echo "export PREFECT_API_URL=$PREFECT_API_URL WIRO_SWEEP_REPORT_URL=$WIRO_SWEEP_REPORT_URL"
    if [ -n "${EMULATOR:-}" ]; then
        echo "export WIRO_API_KEY=$WIRO_API_KEY WIRO_API_SECRET=$WIRO_API_SECRET"
        echo "export WIRO_BASE_URL=$WIRO_BASE_URL WIRO_SOCKET_URL=$WIRO_SOCKET_URL"
    fi
} >"$ENV_FILE"
try="cd $(printf %q "$PWD") && source prefect-stack.env && .venv/bin/wiro-sweep run prompts/demo.csv --out runs/sharded --shards 2"
if [ -n "${EMULATOR:-}" ]; then
    echo "Try: $try"
else
    echo "Try, with your WIRO_API_KEY and WIRO_API_SECRET exported: $try"
fi
wait
