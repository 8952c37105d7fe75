"""Writes scikit-learn's digits (1,797 real handwritten digits, 8x8, 10 classes) as RGB PNGs
for the ML-assist tests: dark strokes on white, upscaled to 48x48 (bicubic) in the middle of a
64x64 white page, so the backbone sees something like a photo of a digit and its centre crop
(0.875) keeps the whole digit. Usage: digits.py OUT_DIR [COUNT]

Prints one JSON line per image: {"key": "digit-0001.png", "label": "7"}.
"""

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def main() -> None:
    out = Path(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else None
    out.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    images, targets = digits.images, digits.target
    if count is not None:
        images, targets = images[:count], targets[:count]
    for index, (pixels, target) in enumerate(zip(images, targets)):
        gray = (255 - pixels * (255 / 16)).clip(0, 255).astype(np.uint8)
        digit = Image.fromarray(gray, mode="L").resize((48, 48), Image.BICUBIC)
        image = Image.new("L", (64, 64), 255)
        image.paste(digit, (8, 8))
        image = image.convert("RGB")
        key = f"digit-{index:04}.png"
        image.save(out / key)
        print(json.dumps({"key": key, "label": str(int(target))}))


if __name__ == "__main__":
    main()
