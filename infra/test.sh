#!/usr/bin/env bash
# The whole test suite, as CI runs it on a fresh machine: formatting, lints with warnings as
# errors, then every test of the workspace (unit, property, contract and black-box HTTP tests).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# CI builds a clean clone once: incremental caches would only cost it disk (gigabytes) and time.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "== Python judges (pycocotools 2.0.8 and newest, from PyPI)"
eval "$(./infra/python-env.sh)"
eval "$(./infra/models/prepare.sh)"

echo "== the web app (npm packages, type check, dist/ up to date, Chromium)"
./infra/web.sh

echo "== moto_server (the AWS-protocol emulator) on a free loopback port"
eval "$(./infra/moto.sh start)"
trap './infra/moto.sh stop' EXIT

echo "== cargo machete (no unused dependencies)"
# Built once per machine (about 14 minutes on 2 cores) into the user's cache, outside the clone,
# as cargo's registry cache is: every clone on the machine, CI's included, reuses it.
machete_version=0.9.2
machete_root="${XDG_CACHE_HOME:-$HOME/.cache}/labeling-tools/cargo-machete-$machete_version"
if [ ! -x "$machete_root/bin/cargo-machete" ]; then
    cargo install --quiet --locked --version "$machete_version" --root "$machete_root" cargo-machete
fi
"$machete_root/bin/cargo-machete"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test (embedded store, AWS adapters against the emulator)"
cargo test --workspace --locked

echo "== the black-box HTTP suite again, on DynamoDB, S3 and SQS (the emulator)"
# `--workspace` with the test targets named, not `-p labeling-tests`: features unify over the
# packages a command selects, so `-p` would build every dependency and binary a second time
# (half an hour and gigabytes of disk on CI), while this reuses the build above.
LABELING_TEST_STORE=aws cargo test --workspace --locked --test blackbox --test logging

echo "== the web app in headless Chromium against a fresh local server"
./web/e2e/run.sh "${CARGO_TARGET_DIR:-target}/debug/labeling"
