#!/usr/bin/env bash
# Runs the web app's end-to-end tests: a `labeling` server on a fresh data folder and a free
# port, then `node --test web/e2e/` in headless Chromium. Usage: web/e2e/run.sh PATH/TO/labeling
# [SCRIPT] (infra/test.sh passes the binary it built; a SCRIPT relative to web/, such as
# bench/next_page.mjs, runs instead of the tests). Screenshots land in web/e2e/artifacts/.
# The Cognito sign-in test starts a second server of its own on a user pool in moto_server:
# the one infra/test.sh started (LABELING_MOTO_ENDPOINT), else one started here.
set -euo pipefail
binary=$(realpath "${1:?usage: web/e2e/run.sh PATH/TO/labeling [SCRIPT]}")
script=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
data=$(mktemp -d)
log="$data.log"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token=$(python3 -c 'import secrets; print("e2e_" + secrets.token_hex(24))')
env -u LABELING_ORT_DYLIB -u LABELING_BACKBONE -u LABELING_DETECTION_BACKBONE LABELING_ADMIN_TOKEN="$token" "$binary" serve --data-dir "$data/labeling" --addr "127.0.0.1:$port" \
  --no-demo --no-ml > "$log" 2>&1 &
server=$!
moto_started=
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$data" "$log"
  if [ -n "$moto_started" ]; then "$here/../../infra/moto.sh" stop; fi
}
trap cleanup EXIT
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$port/healthz" > /dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
if [ -z "$script" ] && [ -z "${LABELING_MOTO_ENDPOINT:-}" ]; then
  eval "$("$here/../../infra/python-env.sh")"
  eval "$("$here/../../infra/moto.sh" start)"
  moto_started=1
fi
export LABELING_BINARY="$binary" LABELING_URL="http://127.0.0.1:$port" LABELING_ADMIN_TOKEN="$token"
export LABELING_DATA="$data/labeling" ARTIFACTS="$here/artifacts"
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -n "$script" ] || rm -rf "$ARTIFACTS"
cd "$here/.."
if [ -n "$script" ]; then
  node "$script"
elif ! node --test --test-reporter=spec e2e/; then
  echo "--- server log ---"; tail -50 "$log"; exit 1
fi
