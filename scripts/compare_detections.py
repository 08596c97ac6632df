#!/usr/bin/env python3
"""Compare two `speck detect --json` outputs (one JSON object per image per line): same images,
same number of detections, and after sorting by score every box within TOL pixels and every
score within 1e-3. Used by scripts/test_arm.sh (x86 build vs Arm build under qemu)."""
import json
import sys

TOL = 0.5


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(a_path, b_path):
    a, b = load(a_path), load(b_path)
    if len(a) != len(b) or not a:
        sys.exit(f"compare: {len(a)} vs {len(b)} images")
    total = 0
    for ia, ib in zip(a, b):
        da = sorted(ia["detections"], key=lambda d: -d["score"])
        db = sorted(ib["detections"], key=lambda d: -d["score"])
        if len(da) != len(db):
            sys.exit(f"compare: {ia['image']}: {len(da)} vs {len(db)} detections")
        for x, y in zip(da, db):
            if x["class_id"] != y["class_id"] or abs(x["score"] - y["score"]) > 1e-3:
                sys.exit(f"compare: {ia['image']}: {x} vs {y}")
            bx, by = x["bbox"], y["bbox"]
            if max(abs(p - q) for p, q in zip(bx, by)) > TOL:
                sys.exit(f"compare: {ia['image']}: box {bx} vs {by}")
        total += len(da)
    print(f"compare: {len(a)} image(s), {total} detections match (boxes within {TOL} px)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
