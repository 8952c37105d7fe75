#!/usr/bin/env bash
# The web app's part of the test suite, before cargo embeds web/dist/ in the binary:
# installs its npm packages (exact versions from web/package-lock.json, cached in
# web/node_modules), type-checks it, rebuilds it and fails when the committed web/dist/ differs
# from the sources, and makes sure Debian's Chromium is there for the browser tests.
set -euo pipefail
cd "$(dirname "$0")/../web"

command -v node > /dev/null || { echo "node (Node.js 20 or newer) is needed to build and test the web app" >&2; exit 1; }
# npm ci wipes node_modules; skip it while the lock file is what was installed.
if ! cmp -s package-lock.json node_modules/.installed-lock 2>/dev/null; then
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.installed-lock
fi

echo "== web: type check"
./node_modules/.bin/tsc --noEmit -p .

echo "== web: the committed dist/ is what the sources build"
rebuilt=$(mktemp -d)
trap 'rm -rf "$rebuilt"' EXIT
WEB_OUT="$rebuilt" node build.mjs
if ! diff -r "$rebuilt" dist > /dev/null; then
    diff -r "$rebuilt" dist | head -20 >&2 || true
    echo "web/dist/ is stale: run 'cd web && npm run build' and commit it" >&2
    exit 1
fi
for file in dist/app.js dist/app.css; do
    echo "   $file: $(wc -c < "$file") bytes, $(gzip -9c "$file" | wc -c) gzipped"
done

if ! command -v "${CHROMIUM:-chromium}" > /dev/null; then
    echo "== web: installing Debian's chromium for the browser tests"
    sudo_if_needed=""
    [ "$(id -u)" -eq 0 ] || sudo_if_needed=sudo
    $sudo_if_needed apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_if_needed apt-get install -y -qq chromium > /dev/null
fi
