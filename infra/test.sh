#!/usr/bin/env bash
# The whole test suite, as CI runs it on a fresh machine: formatting, lints with warnings as
# errors, then every test of the workspace (unit, property, contract and black-box HTTP tests).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== Python judges (pycocotools 2.0.8 and newest, from PyPI)"
eval "$(./infra/python-env.sh)"

echo "== moto_server (the AWS-protocol emulator) on a free loopback port"
eval "$(./infra/moto.sh start)"
trap './infra/moto.sh stop' EXIT

echo "== cargo machete (no unused dependencies; installed once into .venv, about 14 minutes on 2 cores)"
machete_version=0.9.2
machete=.venv/cargo-machete-$machete_version/bin/cargo-machete
if [ ! -x "$machete" ]; then
    cargo install --quiet --locked --version "$machete_version" \
        --root ".venv/cargo-machete-$machete_version" cargo-machete
fi
"$machete"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test (embedded store, AWS adapters against the emulator)"
cargo test --workspace --locked

echo "== the black-box HTTP suite again, on DynamoDB, S3 and SQS (the emulator)"
LABELING_TEST_STORE=aws cargo test --locked -p labeling-tests
