#!/usr/bin/env bash
# Makes the Python environments the tests judge our output with (idempotent), and prints the
# variables that point the tests at them. Everything comes from PyPI.
#   .venv/coco-2.0.8   pycocotools 2.0.8 (the release many training stacks still pin)
#   .venv/coco-latest  the newest pycocotools
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}

make_venv() {
    local dir=$1; shift
    if [ ! -x "$dir/bin/python" ] || ! "$dir/bin/python" -c 'import pycocotools' 2>/dev/null; then
        rm -rf "$dir"
        "$python" -m venv "$dir"
        "$dir/bin/pip" install --quiet --disable-pip-version-check "$@" >&2
    fi
}

make_venv .venv/coco-2.0.8 'pycocotools==2.0.8' 'numpy<2.3'
make_venv .venv/coco-latest --upgrade pycocotools numpy

echo "export LABELING_COCO_PYTHONS=$PWD/.venv/coco-2.0.8/bin/python:$PWD/.venv/coco-latest/bin/python"
