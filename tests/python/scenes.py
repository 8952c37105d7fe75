"""Writes a synthetic object-detection data set with known truth for the box-prelabel tests:
each scene is a random crop of a real photo (scikit-image's and scikit-learn's sample images,
which ship in the wheels, so nothing is downloaded) with 2-4 objects pasted on it, each a tight
rectangular crop of another real photo: "cup" (cup and saucer from skimage's coffee), "cat"
(the face from chelsea) and "rocket" (the rocket on its launch table from rocket). Objects are scaled so the
longer side is 70-220 px, flipped at random, jittered +-15% in brightness and contrast, lie
fully inside the scene, overlap no earlier object by more than IoU 0.05 and hide at most 10% of
any earlier object (so a small object is never mostly covered by a big one). Usage:
scenes.py OUT_DIR COUNT [SEED]

Scene i depends only on SEED and i, so the same SEED gives byte-identical files, and a smaller
COUNT gives a prefix of a larger one. Writes scene-0000.jpg ... (JPEG, quality 90) and prints
one JSON line per scene, bbox is [x, y, w, h] in pixels:
{"key": "scene-0000.jpg", "width": 640, "height": 480,
 "boxes": [{"label": "cup", "bbox": [12, 40, 150, 138]}, ...]}
"""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

# (source, crop box as (left, top, right, bottom)), chosen by eye.
OBJECTS = {
    "cup": (data.coffee, (76, 16, 481, 390)),  # cup + saucer + spoon
    "cat": (data.chelsea, (0, 0, 380, 300)),  # the face; the photo is all face
    # Nose to the base, as wide as the launch table's legs: the body alone (30 px of 280) pasted
    # at 70-220 px would be 8-24 px wide, under one 16-pixel cell of the detection backbone's
    # map once letterboxed, a limit of the stride (said in the README), not of the test.
    "rocket": (data.rocket, (286, 126, 358, 406)),
}
LABELS = sorted(OBJECTS)


def sklearn_image(name: str) -> np.ndarray:
    """What sklearn.datasets.load_sample_image(name) returns, without importing scikit-learn
    (that import alone takes seconds)."""
    root = Path(importlib.util.find_spec("sklearn").origin).parent
    with Image.open(root / "datasets" / "images" / name) as image:
        return np.asarray(image)


# (source, region used or None for all of it); gray ones become RGB.
BACKGROUNDS = {
    "astronaut": (data.astronaut, (0, 0, 345, 512)),  # left of the space-shuttle model
    "camera": (data.camera, None),
    "china": (lambda: sklearn_image("china.jpg"), None),
    "flower": (lambda: sklearn_image("flower.jpg"), None),
    "motorcycle": (lambda: data.stereo_motorcycle()[0], None),
    "grass": (data.grass, None),
    "gravel": (data.gravel, None),
}
SIZES = [(640, 480), (480, 640), (800, 600), (512, 512)]  # (width, height)
MIN_SIDE, MAX_SIDE = 70, 220
MAX_IOU = 0.05
MAX_HIDDEN = 0.10  # most of an earlier object's area a later one may cover
TRIES = 50


def rgb(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.asarray(array, dtype=np.uint8)).convert("RGB")


def overlap_ok(new: list[int], old: list[int]) -> bool:
    ix = max(0, min(new[0] + new[2], old[0] + old[2]) - max(new[0], old[0]))
    iy = max(0, min(new[1] + new[3], old[1] + old[3]) - max(new[1], old[1]))
    inter = ix * iy
    old_area = old[2] * old[3]
    iou = inter / (new[2] * new[3] + old_area - inter)
    return iou <= MAX_IOU and inter <= MAX_HIDDEN * old_area


def background(rng: np.random.Generator, sources: list[Image.Image]) -> Image.Image:
    source = sources[rng.integers(len(sources))]
    width, height = SIZES[rng.integers(len(SIZES))]
    # Largest rectangle of the scene's aspect that fits the source, shrunk to 60-100%.
    fit = min(source.width / width, source.height / height) * rng.uniform(0.6, 1.0)
    crop_w, crop_h = width * fit, height * fit
    left = rng.uniform(0, source.width - crop_w)
    top = rng.uniform(0, source.height - crop_h)
    scene = source.resize(
        (width, height), Image.BILINEAR, box=(left, top, left + crop_w, top + crop_h)
    )
    if rng.random() < 0.5:
        scene = scene.transpose(Image.FLIP_LEFT_RIGHT)
    return scene


def instance(rng: np.random.Generator, crop: Image.Image) -> Image.Image:
    side = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
    scale = side / max(crop.size)
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    patch = crop.resize(size, Image.LANCZOS)
    if rng.random() < 0.5:
        patch = patch.transpose(Image.FLIP_LEFT_RIGHT)
    contrast, brightness = rng.uniform(0.85, 1.15, size=2)
    pixels = np.asarray(patch, dtype=np.float32)
    mean = pixels.mean()
    pixels = ((pixels - mean) * contrast + mean) * brightness
    return Image.fromarray(pixels.round().clip(0, 255).astype(np.uint8))


def place(
    rng: np.random.Generator, scene: Image.Image, patch: Image.Image, boxes: list[dict]
) -> list[int] | None:
    w, h = patch.size
    for _ in range(TRIES):
        x = int(rng.integers(0, scene.width - w + 1))
        y = int(rng.integers(0, scene.height - h + 1))
        bbox = [x, y, w, h]
        if all(overlap_ok(bbox, other["bbox"]) for other in boxes):
            return bbox
    return None


def main() -> None:
    out = Path(sys.argv[1])
    count = int(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    out.mkdir(parents=True, exist_ok=True)
    crops = {label: rgb(load()).crop(box) for label, (load, box) in OBJECTS.items()}
    sources = []
    for load, box in BACKGROUNDS.values():
        source = rgb(load())
        sources.append(source.crop(box) if box else source)
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        scene = background(rng, sources)
        boxes: list[dict] = []
        wanted = int(rng.integers(2, 5))
        drawn = 0
        # Draw `wanted` objects, dropping any that find no free place; draw more while < 2.
        while drawn < wanted or len(boxes) < 2:
            drawn += 1
            label = LABELS[rng.integers(len(LABELS))]
            patch = instance(rng, crops[label])
            bbox = place(rng, scene, patch, boxes)
            if bbox is None:
                continue
            scene.paste(patch, (bbox[0], bbox[1]))
            boxes.append({"label": label, "bbox": bbox})
        key = f"scene-{index:04}.jpg"
        scene.save(out / key, quality=90)
        size = {"width": scene.width, "height": scene.height}
        print(json.dumps({"key": key, **size, "boxes": boxes}))


if __name__ == "__main__":
    main()
