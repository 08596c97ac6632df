import hashlib
import json
import os

import numpy as np

from speck_models.data.synth import render_scene, write_dataset


def test_same_seed_same_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_dataset(str(a), 3, 11, (640, 360))
    write_dataset(str(b), 3, 11, (640, 360))
    for f in sorted(os.listdir(a / "images")):
        assert (a / "images" / f).read_bytes() == (b / "images" / f).read_bytes()
    assert (a / "annotations.json").read_bytes() == (b / "annotations.json").read_bytes()
    c = tmp_path / "c"
    write_dataset(str(c), 1, 12, (640, 360))
    ha = hashlib.sha256((a / "images" / sorted(os.listdir(a / "images"))[0]).read_bytes()).digest()
    hc = hashlib.sha256((c / "images" / sorted(os.listdir(c / "images"))[0]).read_bytes()).digest()
    assert ha != hc


def test_parallel_rendering_writes_the_same_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_dataset(str(a), 4, 5, (320, 180), start=2)
    write_dataset(str(b), 4, 5, (320, 180), start=2, jobs=3)
    assert sorted(os.listdir(a / "images")) == sorted(os.listdir(b / "images"))
    for f in os.listdir(a / "images"):
        assert (a / "images" / f).read_bytes() == (b / "images" / f).read_bytes()
    assert (a / "annotations.json").read_bytes() == (b / "annotations.json").read_bytes()


def test_masks_inside_boxes():
    n_people = 0
    for i in range(6):
        sc = render_scene(5, i, (1280, 720))
        assert len(sc.anns) == len(sc.masks)
        for ann, m in zip(sc.anns, sc.masks):
            x, y, w, h = ann["bbox"]
            assert w >= 1 and h >= 1
            if m is None:  # crowd ignore region
                assert ann["ignore"] == 1 and ann["iscrowd"] == 1
                continue
            x0, y0, mask = m
            ys, xs = np.nonzero(mask)
            assert len(ys) > 0
            # every rendered pixel inside the box, and the box tight around them
            assert (x0 + xs).min() == x and (x0 + xs).max() == x + w - 1
            assert (y0 + ys).min() == y and (y0 + ys).max() == y + h - 1
            assert h <= 40
            n_people += 1
    assert n_people > 20


def test_coco_format(tmp_path):
    d = write_dataset(str(tmp_path), 2, 3, (320, 240))
    assert d["categories"] == [{"id": 1, "name": "person"}]
    with open(tmp_path / "annotations.json") as f:
        j = json.load(f)
    for a in j["annotations"]:
        assert set(a) >= {"id", "image_id", "category_id", "bbox", "area", "iscrowd", "ignore", "uncertain"}
        assert a["category_id"] == 1 and abs(a["area"] - a["bbox"][2] * a["bbox"][3]) < 1e-6
    for im in j["images"]:
        assert (tmp_path / "images" / im["file_name"]).exists()
