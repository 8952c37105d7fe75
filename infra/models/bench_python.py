"""The featurize benchmark's Python baseline: what a user would write with `onnxruntime` and
Pillow. Reads every JPEG of DIR into memory first (as the Rust side holds its bytes), then for
each batch size decodes, centre-crops 0.875, resizes to 224 (bilinear), normalizes with
(x - 127) / 128 and runs the model batch after batch. Prints one JSON line per batch size:
{"batch": B, "images": N, "seconds": S, "images_per_s": R}.

Usage: bench_python.py MODEL.onnx DIR BATCH[,BATCH...]
"""

import io
import json
import os
import sys
import time

import numpy as np
import onnxruntime
from PIL import Image

SIZE = 224
CROP = 0.875


def preprocess(data):
    image = Image.open(io.BytesIO(data)).convert("RGB")
    width, height = image.size
    side = int(min(width, height) * CROP)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.BILINEAR)
    array = (np.asarray(image, dtype=np.float32) - 127.0) / 128.0
    return array.transpose(2, 0, 1)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    model, directory, batches = sys.argv[1], sys.argv[2], [int(b) for b in sys.argv[3].split(",")]
    files = sorted(f for f in os.listdir(directory) if f.endswith(".jpg"))
    images = [open(os.path.join(directory, f), "rb").read() for f in files]
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    session.run(["embedding"], {"input": np.stack([preprocess(images[0])])})  # warm-up
    for batch in batches:
        started = time.perf_counter()
        for start in range(0, len(images), batch):
            tensor = np.stack([preprocess(data) for data in images[start : start + batch]])
            session.run(["embedding"], {"input": tensor})
        seconds = time.perf_counter() - started
        print(
            json.dumps(
                {"batch": batch, "images": len(images), "seconds": seconds, "images_per_s": len(images) / seconds}
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
