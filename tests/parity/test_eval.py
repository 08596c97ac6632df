"""`speck eval --gt --detections --json` against pycocotools' COCOeval (stats[0] AP, stats[1]
AP50) on generated ground truth / detection sets, to 1e-4; and bad ground truth or results
files fail cleanly (one line naming the file and the entry, non-zero exit, no panic).

speck treats TinyPerson's `ignore` / `uncertain` boxes as crowds; pycocotools only reads
`iscrowd`, so the copy given to pycocotools has `iscrowd` set on those boxes."""
from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_util import assert_clean_failure, assert_no_panic, describe, require_speck, run_speck  # noqa: E402

pycocotools = pytest.importorskip("pycocotools")  # pinned in requirements.txt
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

TOL = 1e-4


@pytest.fixture(scope="session")
def speck():
    return require_speck()


def _box(rng, w, h, lo=2, hi=120):
    bw, bh = rng.uniform(lo, hi, 2)
    return [float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh)), float(bw), float(bh)]


def make_case(name: str, seed: int, n_images=8, n_cats=2, gt_per_img=(0, 12), det_per_img=(0, 30),
              crowd_p=0.1, flag_p=0.1, tiny=False, empty_gt_imgs=0):
    """A GT dict and a results list. Detections are jittered copies of GT boxes (hits at
    varied IoU) plus random boxes (false positives), random scores with ties."""
    rng = np.random.default_rng(seed)
    W, H = 640, 480
    images = [{"id": i + 1, "file_name": f"{i + 1:04d}.jpg", "width": W, "height": H} for i in range(n_images)]
    cats = [{"id": c + 1, "name": f"c{c + 1}"} for c in range(n_cats)]
    anns, dets = [], []
    lo, hi = (1, 40) if tiny else (2, 200)
    for im in images:
        n_gt = 0 if im["id"] <= empty_gt_imgs else int(rng.integers(*gt_per_img, endpoint=True))
        gts = []
        for _ in range(n_gt):
            b = _box(rng, W, H, lo, hi)
            a = {"id": len(anns) + 1, "image_id": im["id"], "category_id": int(rng.integers(1, n_cats + 1)),
                 "bbox": b, "area": b[2] * b[3], "iscrowd": int(rng.random() < crowd_p)}
            if rng.random() < flag_p:
                a["ignore" if rng.random() < 0.5 else "uncertain"] = 1
            anns.append(a)
            gts.append(a)
        n_det = int(rng.integers(*det_per_img, endpoint=True))
        for _ in range(n_det):
            if gts and rng.random() < 0.6:
                g = gts[int(rng.integers(len(gts)))]
                x, y, w, h = g["bbox"]
                j = rng.normal(0, 0.15, 4) * [w, h, w, h]
                b = [x + j[0], y + j[1], max(0.5, w + j[2]), max(0.5, h + j[3])]
                cat = g["category_id"] if rng.random() < 0.9 else int(rng.integers(1, n_cats + 1))
            else:
                b = _box(rng, W, H, lo, hi)
                cat = int(rng.integers(1, n_cats + 1))
            score = float(np.round(rng.random(), 2))  # rounding makes ties
            dets.append({"image_id": im["id"], "category_id": cat, "bbox": [float(v) for v in b], "score": score})
    gt = {"images": images, "annotations": anns, "categories": cats}
    return gt, dets


CASES = {
    "random": dict(seed=1),
    "random_one_cat": dict(seed=2, n_cats=1, n_images=20),
    "crowds": dict(seed=3, crowd_p=0.4, flag_p=0.0),
    "ignore_uncertain": dict(seed=4, crowd_p=0.0, flag_p=0.4),
    "empty_images": dict(seed=5, empty_gt_imgs=3, det_per_img=(0, 5)),
    "images_without_gt_but_dets": dict(seed=6, empty_gt_imgs=6),
    "many_detections": dict(seed=7, det_per_img=(150, 300), gt_per_img=(5, 40), n_images=5),
    "tiny_boxes": dict(seed=8, tiny=True, n_images=15),
    "three_cats": dict(seed=9, n_cats=3, n_images=12),
    "no_detections_for_some": dict(seed=10, det_per_img=(0, 2)),
}


def pycoco_stats(gt: dict, dets: list, tmp: Path):
    gt2 = json.loads(json.dumps(gt))
    for a in gt2["annotations"]:
        if a.get("ignore") or a.get("uncertain"):
            a["iscrowd"] = 1
    p = tmp / "gt_pycoco.json"
    p.write_text(json.dumps(gt2))
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO(str(p))
        if not dets:
            return None
        cd = cg.loadRes(dets)
        e = COCOeval(cg, cd, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e.stats


def speck_eval(gt: dict, dets: list, tmp: Path) -> dict:
    gp, dp = tmp / "gt.json", tmp / "dets.json"
    gp.write_text(json.dumps(gt))
    dp.write_text(json.dumps(dets))
    proc = run_speck(["eval", "--gt", gp, "--detections", dp, "--json"])
    assert_no_panic(proc)
    assert proc.returncode == 0, describe(proc)
    return json.loads(proc.stdout)


def _close(ours, theirs, what):
    if theirs < 0:  # pycocotools' "undefined" (no ground truth)
        assert ours is None, f"{what}: pycocotools -1 (undefined), speck {ours}"
    else:
        assert ours is not None and abs(ours - theirs) <= TOL, f"{what}: speck {ours}, pycocotools {theirs}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_coco_ap_matches_pycocotools(speck, case, tmp_path):
    gt, dets = make_case(case, **CASES[case])
    theirs = pycoco_stats(gt, dets, tmp_path)
    assert theirs is not None
    ours = speck_eval(gt, dets, tmp_path)
    _close(ours["coco_ap"], theirs[0], f"{case} AP")
    _close(ours["coco_ap50"], theirs[1], f"{case} AP50")
    _close(ours["coco_ap75"], theirs[2], f"{case} AP75")
    for k, i in [("coco_ap_small", 3), ("coco_ap_medium", 4), ("coco_ap_large", 5)]:
        _close(ours[k], theirs[i], f"{case} {k}")
    assert ours["detections"] == len(dets)


def test_no_ground_truth_at_all(speck, tmp_path):
    gt, dets = make_case("nogt", seed=11, gt_per_img=(0, 0))
    theirs = pycoco_stats(gt, dets, tmp_path)
    ours = speck_eval(gt, dets, tmp_path)
    _close(ours["coco_ap"], theirs[0], "AP")
    assert ours["tiny"]["ap50"] is None


def test_json_schema(speck, tmp_path):
    gt, dets = make_case("schema", seed=12, tiny=True)
    ours = speck_eval(gt, dets, tmp_path)
    for k in ["coco_ap", "coco_ap50", "coco_ap75", "images", "annotations", "detections"]:
        assert k in ours
    for r in ["tiny", "tiny1", "tiny2", "tiny3", "small", "reasonable", "all"]:
        assert set(ours[r]) == {"ap25", "ap50", "ap75", "mr25", "mr50", "mr75"}, r
        for v in ours[r].values():
            assert v is None or 0.0 <= v <= 1.0


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------
def _eval_files(tmp: Path, gt_text: str, dets_text: str = "[]", extra=()):
    gp, dp = tmp / "gt.json", tmp / "dets.json"
    gp.write_text(gt_text)
    dp.write_text(dets_text)
    return run_speck(["eval", "--gt", gp, "--detections", dp, *extra])


GOOD_GT = {"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "person"}],
           "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}]}


def _gt_with(**changes):
    g = json.loads(json.dumps(GOOD_GT))
    for k, v in changes.items():
        g[k] = v
    return json.dumps(g)


@pytest.mark.parametrize("text,needles", [
    ("{ not json", ["gt.json", "not valid JSON"]),
    ("[]", ["gt.json", "top level"]),
    (json.dumps({"images": [], "categories": []}), ["gt.json", "annotations"]),
    (_gt_with(annotations=[{"id": 7, "image_id": 9, "category_id": 1, "bbox": [1, 2, 3, 4]}]),
     ["gt.json", "annotations[0] (id 7)", "image_id 9"]),
    (_gt_with(annotations=[{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}]),
     ["gt.json", "annotations[0] (id 7)", "bbox"]),
    (_gt_with(annotations=[{"id": 7, "image_id": 1, "category_id": 5, "bbox": [1, 2, 3, 4]}]),
     ["gt.json", "annotations[0]", "category_id 5"]),
    (_gt_with(images=[{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}]),
     ["gt.json", "images[1] (id 1)", "duplicate"]),
    (_gt_with(images=[{"id": "x", "file_name": "a.jpg"}]), ["gt.json", "images[0]", "integer"]),
])
def test_malformed_gt_fails_cleanly(speck, tmp_path, text, needles):
    assert_clean_failure(_eval_files(tmp_path, text), must_contain=needles)


def test_bad_detections_fail_cleanly(speck, tmp_path):
    gt = json.dumps(GOOD_GT)
    assert_clean_failure(_eval_files(tmp_path, gt, "{"), must_contain=["dets.json", "JSON"])
    bad = json.dumps([{"image_id": 3, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}])
    assert_clean_failure(_eval_files(tmp_path, gt, bad), must_contain=["dets.json", "[0]", "image_id 3"])
    bad = json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}])
    assert_clean_failure(_eval_files(tmp_path, gt, bad), must_contain=["dets.json", "score"])


def test_missing_files_fail_cleanly(speck, tmp_path):
    assert_clean_failure(run_speck(["eval", "--gt", tmp_path / "nope.json", "--detections", tmp_path / "d.json"]),
                         must_contain=["nope.json"])


def test_gt_referencing_missing_images_fails_cleanly(speck, tmp_path):
    gp = tmp_path / "gt.json"
    gp.write_text(json.dumps(GOOD_GT))
    (tmp_path / "imgs").mkdir()
    # Fails before any model is needed: the missing image is found first.
    proc = run_speck(["eval", "--gt", gp, "--images", tmp_path / "imgs", "--model", tmp_path / "no_model.onnx"])
    assert_clean_failure(proc, must_contain=["gt.json", "images[0] (id 1)", "a.jpg"])
