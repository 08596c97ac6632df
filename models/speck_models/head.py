"""CenterNet-style anchor-free head at one stride, its loss and its decoder.

Outputs follow docs/model-contract.md (`speck_centernet`):
  heatmap: sigmoid, [B, nc, H/s, W/s]
  box:     [B, 4, H/s, W/s] = (dx, dy) in [0,1] (sigmoid), (w, h) in input pixels
           (w = s * exp(clamp(t, -3, 4)), i.e. 0.2 .. 218 px at s = 4).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SIZE_CLAMP = (-3.0, 4.0)


class CenterNetHead(nn.Module):
    def __init__(self, c, nc=1, stride=4, head_c=None, prior=0.05):
        super().__init__()
        hc = head_c or c
        self.stride = stride
        self.hm = nn.Sequential(nn.Conv2d(c, hc, 3, 1, 1), nn.ReLU(), nn.Conv2d(hc, nc, 1))
        self.reg = nn.Sequential(nn.Conv2d(c, hc, 3, 1, 1), nn.ReLU(), nn.Conv2d(hc, 4, 1))
        nn.init.constant_(self.hm[-1].bias, -math.log((1 - prior) / prior))
        nn.init.normal_(self.reg[-1].weight, std=0.001)
        nn.init.zeros_(self.reg[-1].bias)

    def forward(self, x):
        """Returns raw logits (hm_logit, reg_raw); `activate` turns them into contract outputs."""
        return self.hm(x), self.reg(x)

    def activate(self, hm_logit, reg):
        heat = torch.sigmoid(hm_logit)
        off = torch.sigmoid(reg[:, 0:2])
        wh = torch.exp(torch.clamp(reg[:, 2:4], SIZE_CLAMP[0], SIZE_CLAMP[1])) * float(self.stride)
        return heat, torch.cat([off, wh], dim=1)


# ----------------------------------------------------------------------------- targets
def gaussian_radius(h, w, min_overlap=0.7):
    """CenterNet's radius (in cells) for a box of h x w cells."""
    a1, b1 = 1, h + w
    c1 = w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2 = 4, 2 * (h + w)
    c2 = (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (h + w)
    c3 = (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def build_targets(boxes, ignores, out_h, out_w, stride=4, max_objs=256):
    """boxes: (N,4) x1,y1,x2,y2 in input px of people to detect; ignores: (M,4) regions.

    Returns dict of numpy arrays: hm (1,H,W), hm_mask (1,H,W) [0 inside ignore regions unless a
    positive target is there], ind (K,), off (K,2), wh (K,2), box (K,4), reg_mask (K,).
    """
    hm = np.zeros((1, out_h, out_w), np.float32)
    mask = np.ones((1, out_h, out_w), np.float32)
    for x1, y1, x2, y2 in ignores:
        gx1, gy1 = int(max(0, math.floor(x1 / stride))), int(max(0, math.floor(y1 / stride)))
        gx2, gy2 = int(min(out_w, math.ceil(x2 / stride))), int(min(out_h, math.ceil(y2 / stride)))
        if gx2 > gx1 and gy2 > gy1:
            mask[0, gy1:gy2, gx1:gx2] = 0
    ind = np.zeros(max_objs, np.int64)
    off = np.zeros((max_objs, 2), np.float32)
    wh = np.zeros((max_objs, 2), np.float32)
    bx = np.zeros((max_objs, 4), np.float32)
    reg_mask = np.zeros(max_objs, np.float32)
    k = 0
    for x1, y1, x2, y2 in boxes[:max_objs]:
        w, h = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride
        ix, iy = int(cx), int(cy)
        if not (0 <= ix < out_w and 0 <= iy < out_h) or w <= 0 or h <= 0:
            continue
        r = max(0, int(gaussian_radius(h / stride, w / stride)))
        sigma = (2 * r + 1) / 6.0
        ys, xs = np.arange(iy - r, iy + r + 1), np.arange(ix - r, ix + r + 1)
        g = np.exp(-((ys[:, None] - iy) ** 2 + (xs[None, :] - ix) ** 2) / (2 * sigma * sigma))
        vy, vx = (ys >= 0) & (ys < out_h), (xs >= 0) & (xs < out_w)
        sub = hm[0, ys[vy][0]:ys[vy][-1] + 1, xs[vx][0]:xs[vx][-1] + 1]
        np.maximum(sub, g[np.ix_(vy, vx)], out=sub)
        hm[0, iy, ix] = 1.0
        mask[0, iy, ix] = 1.0
        ind[k] = iy * out_w + ix
        off[k] = (cx - ix, cy - iy)
        wh[k] = (w, h)
        bx[k] = (x1, y1, x2, y2)
        reg_mask[k] = 1
        k += 1
    # positives (and their gaussians) always count, even inside an ignore region
    mask = np.maximum(mask, (hm > 0).astype(np.float32))
    return dict(hm=hm, hm_mask=mask, ind=ind, off=off, wh=wh, box=bx, reg_mask=reg_mask)


# ----------------------------------------------------------------------------- loss
def focal_loss(logit, gt, mask, alpha=2, beta=4):
    """CenterNet penalty-reduced focal loss on a Gaussian heatmap, masked."""
    pred = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = gt.eq(1).float()
    neg = (1 - pos) * mask
    logp, log1mp = F.logsigmoid(logit), F.logsigmoid(-logit)
    pos_loss = (logp * (1 - pred) ** alpha * pos).sum()
    neg_loss = (log1mp * pred ** alpha * (1 - gt) ** beta * neg).sum()
    npos = pos.sum()
    return -(pos_loss + neg_loss) / npos.clamp(min=1.0)


def giou(a, b, eps=1e-7):
    """a, b: (..., 4) x1y1x2y2 -> GIoU (...)."""
    ix1, iy1 = torch.max(a[..., 0], b[..., 0]), torch.max(a[..., 1], b[..., 1])
    ix2, iy2 = torch.min(a[..., 2], b[..., 2]), torch.min(a[..., 3], b[..., 3])
    inter = (ix2 - ix1).clamp(0) * (iy2 - iy1).clamp(0)
    aa = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    ab = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = aa + ab - inter + eps
    iou = inter / union
    cx1, cy1 = torch.min(a[..., 0], b[..., 0]), torch.min(a[..., 1], b[..., 1])
    cx2, cy2 = torch.max(a[..., 2], b[..., 2]), torch.max(a[..., 3], b[..., 3])
    carea = (cx2 - cx1) * (cy2 - cy1) + eps
    return iou - (carea - union) / carea


def centernet_loss(head, hm_logit, reg, t, w_off=1.0, w_wh=1.0, w_giou=1.0):
    B, _, H, W = hm_logit.shape
    l_hm = focal_loss(hm_logit, t["hm"], t["hm_mask"])
    heat, box = head.activate(hm_logit, reg)
    flat = box.reshape(B, 4, H * W)
    ind = t["ind"]
    pr = torch.gather(flat, 2, ind.unsqueeze(1).expand(B, 4, ind.shape[1])).permute(0, 2, 1)  # B,K,4
    m = t["reg_mask"]
    n = m.sum().clamp(min=1.0)
    l_off = (torch.abs(pr[..., :2] - t["off"]).sum(-1) * m).sum() / n
    l_wh = (torch.abs(torch.log(pr[..., 2:]) - torch.log(t["wh"].clamp(min=1e-3))).sum(-1) * m).sum() / n
    s = head.stride
    cx = ((ind % W).float() + pr[..., 0]) * s
    cy = ((ind // W).float() + pr[..., 1]) * s
    pb = torch.stack([cx - pr[..., 2] / 2, cy - pr[..., 3] / 2, cx + pr[..., 2] / 2, cy + pr[..., 3] / 2], -1)
    l_giou = ((1 - giou(pb, t["box"])) * m).sum() / n
    total = l_hm + w_off * l_off + w_wh * l_wh + w_giou * l_giou
    return total, dict(hm=l_hm.item(), off=l_off.item(), wh=l_wh.item(), giou=l_giou.item())


# ----------------------------------------------------------------------------- decode
def decode(heat, box, stride=4, thresh=0.05, topk=300):
    """Contract decoding (3x3 max peaks). heat (nc,H,W), box (4,H,W) numpy -> (N,6) x1,y1,x2,y2,score,cls."""
    t = torch.from_numpy(np.ascontiguousarray(heat))[None]
    mx = F.max_pool2d(t, 3, 1, 1)
    keep = ((t == mx) & (t >= thresh))[0].numpy()
    cls, ys, xs = np.nonzero(keep)
    sc = heat[cls, ys, xs]
    o = np.argsort(-sc)[:topk]
    cls, ys, xs, sc = cls[o], ys[o], xs[o], sc[o]
    dx, dy, w, h = box[0, ys, xs], box[1, ys, xs], box[2, ys, xs], box[3, ys, xs]
    cx, cy = (xs + dx) * stride, (ys + dy) * stride
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, sc, cls], 1).astype(np.float32)
