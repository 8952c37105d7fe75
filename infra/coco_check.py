"""Judges a COCO export with pycocotools, as a downstream training job would read it.

usage: coco_check.py EXPORT.json [bbox] [segm]

Loads the file with COCO(path), feeds its own annotations back as detections (score 1) through
loadRes, and runs COCOeval for each IoU type given. Prints one JSON line with the AP of each and
the pycocotools version; exits 1 unless every AP is exactly 1.0.
"""

import contextlib
import io
import json
import sys

import pycocotools
from pycocotools.coco import COCO
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval


def main() -> int:
    path, iou_types = sys.argv[1], sys.argv[2:]
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(path)
    result = {
        "pycocotools": getattr(pycocotools, "__version__", "unknown"),
        "images": len(ground_truth.getImgIds()),
        "annotations": len(ground_truth.getAnnIds()),
        "categories": len(ground_truth.getCatIds()),
    }
    failed = False
    for iou_type in iou_types:
        detections = []
        for annotation in ground_truth.dataset["annotations"]:
            if iou_type == "segm" and not annotation.get("segmentation"):
                continue
            detection = {
                "image_id": annotation["image_id"],
                "category_id": annotation["category_id"],
                "score": 1.0,
            }
            if iou_type == "segm":
                # Results carry masks as RLE (the detection results format); the ground truth
                # keeps our polygons, which COCOeval rasterizes itself.
                image = ground_truth.imgs[annotation["image_id"]]
                rles = mask_utils.frPyObjects(annotation["segmentation"], image["height"], image["width"])
                detection["segmentation"] = mask_utils.merge(rles)
            else:
                detection["bbox"] = annotation["bbox"]
            detections.append(detection)
        with contextlib.redirect_stdout(io.StringIO()):
            results = ground_truth.loadRes(detections)
            evaluation = COCOeval(ground_truth, results, iou_type)
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        average_precision = float(evaluation.stats[0])
        result[f"{iou_type}_ap"] = average_precision
        if abs(average_precision - 1.0) > 1e-9:
            failed = True
    print(json.dumps(result))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
