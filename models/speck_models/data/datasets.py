"""torch Datasets: synthetic COCO-style JSON (random tiny-preserving crops) and the real
TinyPerson release (640x512 training tiles with overlap, ignore regions)."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..detector import MEAN, STD
from ..head import build_targets


def load_coco(ann_file, img_root=None):
    """Returns [(path, boxes (N,4) xyxy to detect, ignores (M,4) xyxy)].
    TinyPerson semantics: `ignore`, `uncertain`, `iscrowd` (and `logo`) boxes are ignore regions."""
    with open(ann_file) as f:
        d = json.load(f)
    root = img_root or os.path.join(os.path.dirname(ann_file), "images")
    per = {im["id"]: [] for im in d["images"]}
    for a in d["annotations"]:
        per.setdefault(a["image_id"], []).append(a)
    out = []
    for im in d["images"]:
        bs, ig = [], []
        for a in per[im["id"]]:
            x, y, w, h = a["bbox"]
            b = [x, y, x + w, y + h]
            if a.get("ignore") or a.get("uncertain") or a.get("iscrowd") or a.get("logo"):
                ig.append(b)
            else:
                bs.append(b)
        out.append((os.path.join(root, im["file_name"]), np.array(bs, np.float32).reshape(-1, 4),
                    np.array(ig, np.float32).reshape(-1, 4)))
    return out


def to_tensor(img_u8):
    x = torch.from_numpy(np.array(img_u8, copy=True)).permute(2, 0, 1).float() / 255.0
    m = torch.tensor(MEAN).view(3, 1, 1)
    s = torch.tensor(STD).view(3, 1, 1)
    return (x - m) / s


def crop_sample(img, boxes, ignores, win, out_size, flip=False, stride=4, min_vis=0.5):
    """Crops window (x0, y0, w, h) of img, resizes it to out_size x out_size, builds targets.
    People less than `min_vis` visible in the window become ignore regions."""
    x0, y0, w, h = win
    pil = Image.fromarray(img)
    crop = pil.crop((x0, y0, x0 + w, y0 + h))  # pads with zeros outside
    sx, sy = out_size / w, out_size / h
    if (w, h) != (out_size, out_size):
        crop = crop.resize((out_size, out_size), Image.BILINEAR)
    arr = np.asarray(crop)

    def tx(b):
        b = b.copy()
        b[:, [0, 2]] = (b[:, [0, 2]] - x0) * sx
        b[:, [1, 3]] = (b[:, [1, 3]] - y0) * sy
        return b

    b, ig = tx(boxes), tx(ignores)
    if len(b):
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        cb = np.clip(b, 0, out_size)
        vis = (cb[:, 2] - cb[:, 0]).clip(0) * (cb[:, 3] - cb[:, 1]).clip(0) / np.maximum(area, 1e-6)
        keep = vis >= min_vis
        part = (vis > 0) & ~keep
        ig = np.concatenate([ig, cb[part]], 0)
        b = cb[keep]
    ig = np.clip(ig, 0, out_size)
    if flip:
        arr = arr[:, ::-1]
        b = b.copy(); ig = ig.copy()
        b[:, [0, 2]] = out_size - b[:, [2, 0]]
        ig[:, [0, 2]] = out_size - ig[:, [2, 0]]
    o = out_size // stride
    t = build_targets(b, ig, o, o, stride)
    t = {k: torch.from_numpy(v) for k, v in t.items()}
    return to_tensor(arr), t


class SynthDataset(Dataset):
    """Random `size` crops (people-centred with p=0.7) from synthetic 1280x720 renders.
    The crop window is scaled by 1/s, s ~ U(scale_aug), so people stay tiny."""

    def __init__(self, ann_file, size=384, length=10 ** 7, scale_aug=(0.8, 1.25), seed=0, cache=True, train=True):
        self.items = load_coco(ann_file)
        self.size, self.length, self.scale_aug, self.seed, self.train = size, length, scale_aug, seed, train
        self.cache = {} if cache else None
        self.epoch = 0

    def __len__(self):
        return self.length if self.train else len(self.items)

    def preload(self, threads=4):
        """Decodes every image now (before DataLoader workers fork, so they share the pixels)."""
        from concurrent.futures import ThreadPoolExecutor
        if self.cache is None:
            return
        with ThreadPoolExecutor(threads) as ex:
            for i, im in enumerate(ex.map(lambda p: np.asarray(Image.open(p[0]).convert("RGB")), self.items)):
                self.cache[i] = im

    def _img(self, i):
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        im = np.asarray(Image.open(self.items[i][0]).convert("RGB"))
        if self.cache is not None:
            self.cache[i] = im
        return im

    def __getitem__(self, k):
        rng = np.random.default_rng([self.seed, self.epoch, k])
        i = int(rng.integers(len(self.items))) if self.train else k
        img = self._img(i)
        _, boxes, ignores = self.items[i]
        H, W = img.shape[:2]
        s = float(rng.uniform(*self.scale_aug)) if self.train else 1.0
        cw = int(round(self.size / s))
        if len(boxes) and rng.random() < 0.7:
            b = boxes[int(rng.integers(len(boxes)))]
            cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            x0 = int(cx - rng.uniform(0.1, 0.9) * cw)
            y0 = int(cy - rng.uniform(0.1, 0.9) * cw)
        else:
            x0, y0 = int(rng.integers(0, max(1, W - cw))), int(rng.integers(0, max(1, H - cw)))
        x0, y0 = min(max(0, x0), max(0, W - cw)), min(max(0, y0), max(0, H - cw))
        img_t, t = crop_sample(img, boxes, ignores, (x0, y0, cw, cw), self.size, flip=bool(rng.random() < 0.5))
        if self.train:  # photometric jitter (brightness / contrast)
            img_t = img_t * float(rng.uniform(0.8, 1.2)) + float(rng.uniform(-0.2, 0.2))
        return img_t, t


def tile_windows(W, H, tw, th, overlap):
    """Top-left corners of tw x th tiles covering W x H with at least `overlap` px overlap."""
    def pos(L, t):
        if L <= t:
            return [0]
        n = math.ceil((L - overlap) / (t - overlap))
        return [int(round(i * (L - t) / (n - 1))) for i in range(n)]
    return [(x, y) for y in pos(H, th) for x in pos(W, tw)]


class TinyPersonDataset(Dataset):
    """The real TinyPerson release (e.g. `tiny_set/annotations/tiny_set_train_all.json`, images under
    `tiny_set/train/`): every image cut into 640x512 tiles with `overlap` px overlap, as TinyBenchmark
    trains. Each item is one tile, randomly cropped to `size` (train) or resized (eval).
    `ignore` / `uncertain` / `iscrowd` / `logo` boxes become masked-out regions of the heatmap loss."""

    def __init__(self, ann_file, img_root, size=384, tile=(640, 512), overlap=100, train=True, seed=0):
        self.items = load_coco(ann_file, img_root)
        self.size, self.tile, self.train, self.seed = size, tile, train, seed
        self.tiles = []
        with open(ann_file) as f:
            dims = {os.path.join(img_root, im["file_name"]): (im["width"], im["height"]) for im in json.load(f)["images"]}
        for i, (p, _, _) in enumerate(self.items):
            W, H = dims[p]
            self.tiles += [(i, x, y) for x, y in tile_windows(W, H, tile[0], tile[1], overlap)]
        self.epoch = 0

    def __len__(self):
        return len(self.tiles)

    def __getitem__(self, k):
        i, x, y = self.tiles[k]
        p, boxes, ignores = self.items[i]
        img = np.asarray(Image.open(p).convert("RGB"))
        tw, th = self.tile
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, k])
            cw = min(self.size, tw, th)
            x0 = x + int(rng.integers(0, tw - cw + 1))
            y0 = y + int(rng.integers(0, th - cw + 1))
            return crop_sample(img, boxes, ignores, (x0, y0, cw, cw), self.size, flip=bool(rng.random() < 0.5))
        cw = max(tw, th)
        return crop_sample(img, boxes, ignores, (x, y, cw, cw), self.size)


def collate(batch):
    imgs = torch.stack([b[0] for b in batch])
    t = {k: torch.stack([b[1][k] for b in batch]) for k in batch[0][1]}
    return imgs, t
