#!/usr/bin/env bash
# Makes the Python environments the tests judge our output with (idempotent), and prints the
# variables that point the tests at them. Everything comes from PyPI.
#   .venv/coco-2.0.8   pycocotools 2.0.8 (the release many training stacks still pin)
#   .venv/coco-latest  the newest pycocotools
#   .venv/moto         moto_server, the AWS-protocol emulator the AWS adapters are tested against
#   .venv/cfn          cfn-lint, which lints template.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}

# make_venv DIR MODULE PACKAGE...: (re)creates DIR unless MODULE already imports there.
make_venv() {
    local dir=$1 module=$2; shift 2
    if [ ! -x "$dir/bin/python" ] || ! "$dir/bin/python" -c "import $module" 2>/dev/null; then
        rm -rf "$dir"
        "$python" -m venv "$dir"
        "$dir/bin/pip" install --quiet --disable-pip-version-check "$@" >&2
    fi
}

make_venv .venv/coco-2.0.8 pycocotools 'pycocotools==2.0.8' 'numpy<2.3'
make_venv .venv/coco-latest pycocotools --upgrade pycocotools numpy
# jsonschema also checks every black-box response against the OpenAPI document (tests/src/openapi.rs);
# format-nongpl makes it check date-time and uri formats too.
make_venv .venv/moto 'moto, rfc3986_validator, rfc3339_validator' 'moto[server]' 'jsonschema[format-nongpl]>=4.18'
make_venv .venv/cfn cfnlint 'cfn-lint==1.58.*'

echo "export LABELING_COCO_PYTHONS=$PWD/.venv/coco-2.0.8/bin/python:$PWD/.venv/coco-latest/bin/python"
echo "export LABELING_MOTO_SERVER=$PWD/.venv/moto/bin/moto_server"
echo "export LABELING_CFN_PYTHON=$PWD/.venv/cfn/bin/python"
