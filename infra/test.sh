#!/usr/bin/env bash
# The whole test suite, as CI runs it on a fresh machine: formatting, lints with warnings as
# errors, then every test of the workspace (unit, property, contract and black-box HTTP tests).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== Python judges (pycocotools 2.0.8 and newest, from PyPI)"
eval "$(./infra/python-env.sh)"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked
