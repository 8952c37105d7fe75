#!/usr/bin/env bash
# Starts or stops a moto server (the AWS emulator the labeling-aws adapter tests run against).
#   eval "$(./infra/python-env.sh)"   # installs moto, sets LABELING_MOTO_SERVER
#   eval "$(./infra/moto.sh start)"   # sets LABELING_MOTO_ENDPOINT, LABELING_MOTO_PID, test keys
#   ./infra/moto.sh stop              # stops the server named by LABELING_MOTO_PID
# Each server listens on 127.0.0.1 on a free port, so several runs can share the machine; its
# pid is kept in /tmp/labeling-moto-PORT.pid and its log in /tmp/labeling-moto-PORT.log.
set -euo pipefail

python=${PYTHON:-python3}

# True while process $1 runs and (where /proc tells) is a moto server, not a reused pid.
is_moto() {
    kill -0 "$1" 2>/dev/null || return 1
    if [ -r "/proc/$1/cmdline" ]; then
        tr '\0' ' ' <"/proc/$1/cmdline" | grep -q moto_server
    fi
}

stop() {
    local pid=${LABELING_MOTO_PID:-} pidfile=
    if [ -n "${LABELING_MOTO_ENDPOINT:-}" ]; then
        pidfile=/tmp/labeling-moto-${LABELING_MOTO_ENDPOINT##*:}.pid
        if [ -z "$pid" ] && [ -f "$pidfile" ]; then
            pid=$(cat "$pidfile")
        fi
    fi
    if [ -z "$pid" ]; then
        echo "no moto server to stop: LABELING_MOTO_PID is not set" \
            '(start one with eval "$(./infra/moto.sh start)")' >&2
        return 0
    fi
    if is_moto "$pid"; then
        kill "$pid"
        for _ in $(seq 50); do
            is_moto "$pid" || break
            sleep 0.1
        done
        if is_moto "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
        echo "moto server $pid stopped" >&2
    fi
    if [ -n "$pidfile" ]; then rm -f "$pidfile" "${pidfile%.pid}.log"; fi
}

start() {
    local server=${LABELING_MOTO_SERVER:-}
    if [ -z "$server" ] || [ ! -x "$server" ]; then
        echo "moto_server not found (LABELING_MOTO_SERVER='$server'): run" \
            'eval "$(./infra/python-env.sh)"' "first" >&2
        exit 1
    fi
    local port
    port=$("$python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()')
    local pidfile=/tmp/labeling-moto-$port.pid logfile=/tmp/labeling-moto-$port.log
    nohup "$server" -H 127.0.0.1 -p "$port" >"$logfile" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$pidfile"
    local endpoint="http://127.0.0.1:$port"
    local deadline=$((SECONDS + 10))
    while [ "$SECONDS" -le "$deadline" ]; do
        if "$python" -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/moto-api/", timeout=1)' "$endpoint" 2>/dev/null; then
            echo "export LABELING_MOTO_ENDPOINT=$endpoint"
            echo "export LABELING_MOTO_PID=$pid"
            echo "export AWS_ACCESS_KEY_ID=testing"
            echo "export AWS_SECRET_ACCESS_KEY=testing"
            echo "moto server $pid listening on $endpoint (log: $logfile)" >&2
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    echo "moto server did not answer on $endpoint within 10 s; log $logfile:" >&2
    tail -n 20 "$logfile" >&2 || true
    kill "$pid" 2>/dev/null || true
    rm -f "$pidfile"
    exit 1
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
