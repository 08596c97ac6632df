import json
import os

import numpy as np
import torch

from speck_models.data.datasets import SynthDataset, TinyPersonDataset, collate, tile_windows
from speck_models.data.synth import write_dataset


def test_tile_windows_cover_with_overlap():
    w = tile_windows(1280, 720, 640, 512, 100)
    xs, ys = sorted({x for x, _ in w}), sorted({y for _, y in w})
    assert xs[0] == 0 and xs[-1] + 640 == 1280 and ys[0] == 0 and ys[-1] + 512 == 720
    assert all(b - a <= 640 - 100 for a, b in zip(xs, xs[1:]))


def test_tinyperson_loader(tmp_path):
    # a TinyPerson-shaped release: json elsewhere than the images, ignore + uncertain flags
    write_dataset(str(tmp_path / "rel"), 2, 21, (1280, 720))
    ann = tmp_path / "tiny_set_train_all.json"
    d = json.load(open(tmp_path / "rel" / "annotations.json"))
    for a in d["annotations"]:
        a["logo"] = False
        a["in_dense_image"] = False
    json.dump(d, open(ann, "w"))
    ds = TinyPersonDataset(str(ann), str(tmp_path / "rel" / "images"), size=256, train=True)
    assert len(ds) == 2 * len(tile_windows(1280, 720, 640, 512, 100))
    img, t = collate([ds[0], ds[1]])
    assert img.shape == (2, 3, 256, 256) and t["hm"].shape == (2, 1, 64, 64)
    ev = TinyPersonDataset(str(ann), str(tmp_path / "rel" / "images"), size=320, train=False)
    assert ev[0][0].shape == (3, 320, 320)


def test_synth_dataset_crops(tmp_path):
    write_dataset(str(tmp_path), 2, 22, (1280, 720))
    ds = SynthDataset(str(tmp_path / "annotations.json"), size=192, length=4)
    a, b = ds[3], ds[3]
    assert torch.equal(a[0], b[0])  # deterministic crops
    assert a[0].shape == (3, 192, 192)
    assert float(a[1]["hm"].max()) in (0.0, 1.0)
    assert np.all(a[1]["hm_mask"].numpy() >= 0)
