"""AP50 evaluator (IoU 0.5, TinyPerson-style ignore absorption) with tiled inference.

  python -m speck_models.evaluate --onnx models/speck-tiny.onnx --data examples/data
  python -m speck_models.evaluate --ckpt /tmp/models-scratch/run/best.pt --data DIR

Images are cut into input-size tiles (64 px overlap, as the model was trained on tiles of
1280x720 frames), tile detections are merged with NMS 0.5, then scored.  Ignore / uncertain /
crowd boxes: a detection matching one with IoU >= 0.5, or lying inside one with
IoD = inter / area(det) >= 0.5, is neither TP nor FP.  AP uses 101 recall points (COCO).
AP50-tiny restricts ground truth to area w*h in [1, 20^2] (TinyPerson `tiny`); other ground truth
becomes ignore, and unmatched detections of area outside the range are not counted.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
from PIL import Image

from .data.datasets import load_coco, tile_windows
from .detector import MEAN, STD


def nms(dets, thr=0.5):
    if len(dets) == 0:
        return dets
    o = np.argsort(-dets[:, 4])
    dets = dets[o]
    keep = []
    x1, y1, x2, y2 = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3]
    area = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    sup = np.zeros(len(dets), bool)
    for i in range(len(dets)):
        if sup[i]:
            continue
        keep.append(i)
        iw = (np.minimum(x2[i], x2[i + 1:]) - np.maximum(x1[i], x1[i + 1:])).clip(0)
        ih = (np.minimum(y2[i], y2[i + 1:]) - np.maximum(y1[i], y1[i + 1:])).clip(0)
        inter = iw * ih
        iou = inter / (area[i] + area[i + 1:] - inter + 1e-9)
        sup[i + 1:] |= iou > thr
    return dets[keep]


def iou_matrix(a, b):
    if len(a) == 0 or len(b) == 0:
        z = np.zeros((len(a), len(b)), np.float32)
        return z, z
    iw = (np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])).clip(0)
    ih = (np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])).clip(0)
    inter = iw * ih
    aa = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None]
    ab = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None, :]
    return inter / (aa + ab - inter + 1e-9), inter / (aa + 1e-9)


def average_precision(dets_per_img, gts_per_img, ign_per_img, iou_thr=0.5, area_rng=None):
    """dets: list of (N,5+) x1y1x2y2score; gts/igns: list of (M,4). Returns AP (0..1), npos."""
    scores, tps, npos = [], [], 0
    for dets, gts, igns in zip(dets_per_img, gts_per_img, ign_per_img):
        gts = np.asarray(gts, np.float32).reshape(-1, 4)
        igns = np.asarray(igns, np.float32).reshape(-1, 4)
        if area_rng is not None and len(gts):
            a = (gts[:, 2] - gts[:, 0]) * (gts[:, 3] - gts[:, 1])
            inr = (a >= area_rng[0]) & (a <= area_rng[1])
            igns = np.concatenate([igns, gts[~inr]], 0)
            gts = gts[inr]
        npos += len(gts)
        dets = dets[np.argsort(-dets[:, 4])] if len(dets) else dets
        matched = np.zeros(len(gts), bool)
        if len(dets) == 0:
            continue
        iou_g = iou_matrix(dets[:, :4], gts)[0] if len(gts) else np.zeros((len(dets), 0))
        if len(igns):
            iou_i, iod_i = iou_matrix(dets[:, :4], igns)
        for d in range(len(dets)):
            best, bj = iou_thr, -1
            for j in range(len(gts)):
                if not matched[j] and iou_g[d, j] >= best:
                    best, bj = iou_g[d, j], j
            if bj >= 0:
                matched[bj] = True
                scores.append(dets[d, 4]); tps.append(1)
                continue
            if len(igns) and (iou_i[d].max() >= iou_thr or iod_i[d].max() >= iou_thr):
                continue  # absorbed by an ignore region
            if area_rng is not None:
                a = (dets[d, 2] - dets[d, 0]) * (dets[d, 3] - dets[d, 1])
                if not (area_rng[0] <= a <= area_rng[1]):
                    continue
            scores.append(dets[d, 4]); tps.append(0)
    if npos == 0:
        return float("nan"), 0
    o = np.argsort(-np.asarray(scores), kind="stable")
    tp = np.asarray(tps, np.float64)[o]
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    rec = ctp / npos
    prec = ctp / np.maximum(ctp + cfp, 1e-9)
    for i in range(len(prec) - 2, -1, -1):
        prec[i] = max(prec[i], prec[i + 1])
    ap = 0.0
    for r in np.linspace(0, 1, 101):
        k = np.searchsorted(rec, r, side="left")
        ap += prec[k] if k < len(prec) else 0.0
    return ap / 101, npos


def preprocess(tile_u8):
    x = tile_u8.astype(np.float32) / 255.0
    x = (x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return x.transpose(2, 0, 1)[None]


def predict_tiled(run, img, size, stride=4, overlap=64, thresh=0.05, batch=8):
    """run: fn(NCHW float32 batch) -> (heat (B,nc,h,w), box (B,4,h,w)) numpy.  img: HxWx3 uint8."""
    from .head import decode
    H, W = img.shape[:2]
    wins = tile_windows(W, H, size, size, overlap)
    out = []
    for i in range(0, len(wins), batch):
        chunk = wins[i:i + batch]
        tiles = []
        for x, y in chunk:
            t = np.zeros((size, size, 3), np.uint8)
            t[:] = 114  # letterbox pad value for frames smaller than a tile
            p = img[y:y + size, x:x + size]
            t[:p.shape[0], :p.shape[1]] = p
            tiles.append(preprocess(t))
        heat, box = run(np.concatenate(tiles, 0))
        for j, (x, y) in enumerate(chunk):
            d = decode(heat[j], box[j], stride, thresh)
            d[:, [0, 2]] += x
            d[:, [1, 3]] += y
            out.append(d)
    d = np.concatenate(out, 0) if out else np.zeros((0, 6), np.float32)
    d[:, [0, 2]] = d[:, [0, 2]].clip(0, W)
    d[:, [1, 3]] = d[:, [1, 3]].clip(0, H)
    return nms(d, 0.5)[:500]


def evaluate(run, items, size, stride=4, thresh=0.05):
    dets, gts, igns = [], [], []
    for path, boxes, ignores in items:
        img = np.asarray(Image.open(path).convert("RGB"))
        dets.append(predict_tiled(run, img, size, stride, thresh=thresh))
        gts.append(boxes)
        igns.append(ignores)
    ap, n = average_precision(dets, gts, igns)
    ap_t, n_t = average_precision(dets, gts, igns, area_rng=(1, 20 ** 2))
    return dict(AP50=ap, AP50_tiny=ap_t, n_gt=n, n_gt_tiny=n_t, images=len(items)), dets


def torch_runner(model, device="cpu"):
    import torch

    def run(x):
        with torch.no_grad():
            h, b = model(torch.from_numpy(x).to(device))
        return h.cpu().numpy(), b.cpu().numpy()
    return run


def onnx_runner(path, threads=2):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    bs = sess.get_inputs()[0].shape[0]

    def run(x):
        hs, bs_ = [], []
        for i in range(x.shape[0]):  # static batch 1
            h, b = sess.run(["heatmap", "box"], {"images": x[i:i + 1]})
            hs.append(h); bs_.append(b)
        return np.concatenate(hs), np.concatenate(bs_)
    size = sess.get_inputs()[0].shape[2]
    return run, int(size)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx")
    ap.add_argument("--ckpt")
    ap.add_argument("--data", required=True, help="dir with annotations.json and images/")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--skip", type=int, default=0, help="leave out the first N images")
    ap.add_argument("--thresh", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the metrics here")
    a = ap.parse_args(argv)
    items = load_coco(os.path.join(a.data, "annotations.json"))
    items = items[a.skip:]
    if a.limit:
        items = items[:a.limit]
    if a.onnx:
        run, size = onnx_runner(a.onnx, a.threads)
        stride = 4
    else:
        import torch
        from .train import load_model
        torch.set_num_threads(a.threads)
        model, cfg = load_model(a.ckpt)
        run, size, stride = torch_runner(model), cfg["input_size"], model.stride
    m, _ = evaluate(run, items, size, stride, a.thresh)
    print(json.dumps(m))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(m, f, indent=1)


if __name__ == "__main__":
    main()
