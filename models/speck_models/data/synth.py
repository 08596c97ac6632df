"""Procedural TinyPerson-style data: tiny people on sea / beach / grass / road / urban scenes.

numpy + Pillow only (no torch), deterministic by seed.  Output is TinyPerson's COCO-style JSON:
`images`, `annotations` (`bbox` [x, y, w, h], `area`, `category_id` 1, `iscrowd`, `ignore`,
`uncertain`), `categories` [{"id": 1, "name": "person"}].

CLI::

    python -m speck_models.data.synth --out DIR --num N --seed S --size 1280x720
    python -m speck_models.data.synth --clip DIR/clip_frames --frames 90 --seed S --size 640x360

Every labelled person's bbox is the tight box of its rendered alpha (before occluders, blur,
noise and JPEG), so the rendered mask always lies inside the box.  Dense crowds are not labelled
person by person: their extent is one `ignore`/`iscrowd` annotation, as in TinyPerson.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SS = 4  # supersampling factor of person sprites

SKIN = [(255, 224, 189), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36),
        (92, 56, 30), (255, 205, 170), (230, 180, 150)]
CLOTH = [(200, 30, 30), (30, 60, 200), (240, 240, 240), (20, 20, 20), (250, 200, 20),
         (30, 150, 60), (250, 120, 20), (120, 40, 160), (0, 170, 200), (240, 100, 170),
         (110, 110, 110), (90, 60, 40), (60, 80, 120), (200, 200, 160)]


# ----------------------------------------------------------------------------- textures
def _noise(rng, h, w, cell):
    """Smooth value noise in [0,1] with feature size ~cell px (bicubic upsampling)."""
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    small = (rng.random((gh, gw)) * 255).astype(np.uint8)
    im = Image.fromarray(small, "L").resize((w, h), Image.BICUBIC)
    return np.asarray(im, np.float32) / 255.0


def _fractal(rng, h, w, cells=(64, 16, 4)):
    out = np.zeros((h, w), np.float32)
    tot = 0.0
    for i, c in enumerate(cells):
        a = 0.5 ** i
        out += a * _noise(rng, h, w, c)
        tot += a
    return out / tot


def _jit(rng, col, amt=20):
    return np.clip(np.asarray(col, np.float32) + rng.uniform(-amt, amt, 3), 0, 255)


def _sea(rng, h, w, y0=0):
    base = _jit(rng, [rng.uniform(20, 60), rng.uniform(80, 130), rng.uniform(120, 170)], 15)
    n = _fractal(rng, h, w, (128, 32, 8))
    yy = (np.arange(h, dtype=np.float32)[:, None] + y0)
    period = 6.0 + 0.02 * yy  # perspective: waves get larger towards the camera
    phase = 2 * math.pi * (yy / period + 1.5 * _noise(rng, h, w, 48))
    waves = np.sin(phase)
    img = base[None, None, :] * (0.8 + 0.35 * n[..., None]) + 18 * waves[..., None]
    caps = (waves > 0.93) & (_noise(rng, h, w, 24) > rng.uniform(0.55, 0.75))
    img[caps] = img[caps] * 0.3 + 0.7 * np.array([235, 240, 245], np.float32)
    return img


def _sand(rng, h, w):
    base = _jit(rng, [215, 195, 150], 20)
    n = _fractal(rng, h, w, (96, 16, 3))
    return base[None, None, :] * (0.8 + 0.3 * n[..., None])


def _grass(rng, h, w):
    base = _jit(rng, [70, 130, 50], 25)
    n = _fractal(rng, h, w, (80, 12, 2))
    img = base[None, None, :] * (0.65 + 0.55 * n[..., None])
    if rng.random() < 0.6:  # a dirt path
        path = np.abs(_noise(rng, h, w, 200) - 0.5) < rng.uniform(0.02, 0.05)
        img[path] = _jit(rng, [170, 150, 110], 15)
    return img


def _asphalt(rng, h, w):
    g = rng.uniform(60, 110)
    base = np.array([g, g, g + rng.uniform(-5, 8)], np.float32)
    n = _fractal(rng, h, w, (64, 8, 2))
    img = base[None, None, :] * (0.75 + 0.45 * n[..., None])
    # lane markings: dashed lines along x
    for _ in range(rng.integers(1, 4)):
        y = rng.integers(0, h)
        th = int(rng.integers(2, 5))
        dash, gap = int(rng.integers(20, 60)), int(rng.integers(20, 60))
        x = int(rng.integers(0, dash + gap))
        while x < w:
            img[y:y + th, x:x + dash] = [225, 225, 215] if rng.random() < 0.8 else [230, 200, 40]
            x += dash + gap
    # sidewalks
    if rng.random() < 0.7:
        sw = int(rng.integers(h // 10, h // 4))
        side = _jit(rng, [170, 165, 155], 15) * (0.85 + 0.2 * _fractal(rng, sw, w, (32, 4))[..., None])
        img[:sw] = side
    return img


def _urban(rng, h, w):
    img = np.empty((h, w, 3), np.float32)
    tile = int(rng.integers(10, 30))
    pav = _jit(rng, [165, 160, 150], 25)
    n = _fractal(rng, h, w, (64, 8))
    img[:] = pav * (0.8 + 0.3 * n[..., None])
    img[::tile, :] *= 0.8
    img[:, ::tile] *= 0.8
    # buildings occupy the top band
    top = int(h * rng.uniform(0.15, 0.45))
    x = 0
    while x < w:
        bw = int(rng.integers(60, 240))
        bh = int(top * rng.uniform(0.6, 1.0))
        col = _jit(rng, CLOTH[int(rng.integers(len(CLOTH)))], 40) * 0.5 + 80
        img[top - bh:top, x:x + bw] = col
        ww, wh = int(rng.integers(5, 14)), int(rng.integers(6, 16))
        wc = _jit(rng, [60, 80, 100], 30)
        for yy in range(top - bh + 6, top - wh - 4, wh + 8):
            for xx in range(x + 5, x + bw - ww - 4, ww + 7):
                img[yy:yy + wh, xx:xx + ww] = wc
        x += bw + int(rng.integers(0, 20))
    img[:max(0, top - int(top * 0.99))] = img[:max(0, top - int(top * 0.99))]
    return img


@dataclass
class Zone:
    kind: str            # 'water' | 'land'
    y0: int
    y1: int


def _background(rng, w, h):
    """Returns (float image HxWx3, scene name, zones)."""
    scene = ["seaside", "seaside", "sea", "beach", "grass", "road", "urban"][int(rng.integers(7))]
    if scene == "seaside":
        shore = int(h * rng.uniform(0.3, 0.7))
        img = np.empty((h, w, 3), np.float32)
        # wavy shore line
        xs = np.arange(w)
        line = shore + (20 * np.sin(xs / rng.uniform(80, 200) + rng.uniform(0, 6)) +
                        25 * (_noise(rng, 1, w, 150)[0] - 0.5)).astype(int)
        sea, sand = _sea(rng, h, w), _sand(rng, h, w)
        yy = np.arange(h)[:, None]
        water = yy < line[None, :]
        img[:] = sand
        img[water] = sea[water]
        foam = np.abs(yy - line[None, :]) < 3
        img[foam] = img[foam] * 0.4 + 0.6 * 240
        wet = (yy >= line[None, :] + 3) & (yy < line[None, :] + 25)
        img[wet] *= 0.8
        zones = [Zone("water", 0, shore - 25), Zone("land", shore + 25, h)]
    elif scene == "sea":
        img = _sea(rng, h, w)
        zones = [Zone("water", 0, h)]
    elif scene == "beach":
        img = _sand(rng, h, w)
        zones = [Zone("land", 0, h)]
    elif scene == "grass":
        img = _grass(rng, h, w)
        zones = [Zone("land", 0, h)]
    elif scene == "road":
        img = _asphalt(rng, h, w)
        zones = [Zone("land", 0, h)]
    else:
        img = _urban(rng, h, w)
        zones = [Zone("land", int(h * 0.3), h)]
    # lighting: directional gradient + vignette + global exposure
    ang = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    g = (np.cos(ang) * (xx / w - 0.5) + np.sin(ang) * (yy / h - 0.5))
    light = rng.uniform(0.75, 1.15) * (1 + rng.uniform(0, 0.5) * g)
    r2 = ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2)
    light = light * (1 - rng.uniform(0, 0.5) * r2)
    img = img * light[..., None]
    return img, scene, zones


# ----------------------------------------------------------------------------- people
def _pose_joints(rng, pose, phase):
    """Joint positions in body-height units, origin at top-centre. Returns dict name->(x,y)."""
    j = {}
    j["head"] = (0.0, 0.075)
    j["neck"] = (0.0, 0.16)
    j["hip"] = (0.0, 0.52)
    sw = 0.10
    j["lsh"], j["rsh"] = (-sw, 0.19), (sw, 0.19)
    j["lhip"], j["rhip"] = (-0.06, 0.52), (0.06, 0.52)
    leg = 0.48
    arm = 0.36
    if pose == "walk":
        a = 0.45 * math.sin(phase)
        la, ra = a, -a
        arma, armb = -0.6 * a, 0.6 * a
    elif pose == "swim":
        la, ra = 0.1, -0.1
        arma = rng.uniform(-2.8, -0.3)
        armb = rng.uniform(0.3, 2.8)
    else:  # stand
        la, ra = rng.uniform(-0.05, 0.15), rng.uniform(-0.15, 0.05)
        arma, armb = rng.uniform(0.05, 0.35), -rng.uniform(0.05, 0.35)
        if rng.random() < 0.2:  # waving
            armb = rng.uniform(2.3, 3.0)
    for side, hip, ang in (("l", j["lhip"], la), ("r", j["rhip"], ra)):
        knee = (hip[0] + math.sin(ang) * leg / 2, hip[1] + math.cos(ang) * leg / 2)
        ang2 = ang - (abs(ang) * 0.5 if pose == "walk" else 0)
        foot = (knee[0] + math.sin(ang2) * leg / 2, knee[1] + math.cos(ang2) * leg / 2)
        j[side + "knee"], j[side + "foot"] = knee, foot
    for side, sh, ang in (("l", j["lsh"], -arma), ("r", j["rsh"], -armb)):
        ang = -ang
        elb = (sh[0] + math.sin(ang) * arm / 2 * (1 if side == "r" else -1) * -1,
               sh[1] + math.cos(ang) * arm / 2)
        hand = (elb[0] + (elb[0] - sh[0]) * 0.9, elb[1] + (elb[1] - sh[1]) * 0.9)
        j[side + "elb"], j[side + "hand"] = elb, hand
    return j


def render_person(rng, height, pose="stand", phase=0.0, cut=None):
    """Renders one person as an RGBA sprite whose figure is `height` px tall.

    `cut`: fraction of the figure height kept (swimmers are partially submerged).
    Returns (rgba uint8 HxWx4, scaled alpha float HxW). The sprite is cropped tightly.
    """
    H = max(2, int(round(height)))
    S = SS
    ph = H * S
    pw = int(ph * 0.9) + 2 * S
    pw += (-pw) % S
    cv = Image.new("RGBA", (pw, ph + 2 * S), (0, 0, 0, 0))
    d = ImageDraw.Draw(cv)
    skin = tuple(int(c) for c in _jit(rng, SKIN[int(rng.integers(len(SKIN)))], 10))
    swimwear = pose == "swim" or rng.random() < 0.25
    shirt = skin if swimwear else tuple(int(c) for c in _jit(rng, CLOTH[int(rng.integers(len(CLOTH)))], 25))
    pants = tuple(int(c) for c in _jit(rng, CLOTH[int(rng.integers(len(CLOTH)))], 25))
    legc = skin if (swimwear or rng.random() < 0.3) else pants
    hair = tuple(int(c) for c in _jit(rng, [40, 30, 20], 30)) if rng.random() < 0.8 else (200, 170, 90)
    j = _pose_joints(rng, pose, phase)
    cx = pw / 2
    sc = ph * 0.98
    P = lambda p: (cx + p[0] * sc, S + p[1] * sc)  # noqa: E731
    lw_leg, lw_arm = max(1, int(0.075 * sc)), max(1, int(0.055 * sc))
    # legs
    for s in "lr":
        d.line([P(j[s + "hip"]), P(j[s + "knee"]), P(j[s + "foot"])], fill=legc + (255,), width=lw_leg, joint="curve")
    # shorts/trousers top
    hx = P(j["hip"])
    d.rectangle([hx[0] - 0.09 * sc, hx[1] - 0.05 * sc, hx[0] + 0.09 * sc, hx[1] + 0.08 * sc], fill=pants + (255,))
    # torso
    ls, rs, lh, rh = P(j["lsh"]), P(j["rsh"]), P(j["lhip"]), P(j["rhip"])
    d.polygon([(ls[0] - 0.02 * sc, ls[1]), (rs[0] + 0.02 * sc, rs[1]), (rh[0] + 0.03 * sc, rh[1]),
               (lh[0] - 0.03 * sc, lh[1])], fill=shirt + (255,))
    # arms
    for s in "lr":
        d.line([P(j[s + "sh"]), P(j[s + "elb"]), P(j[s + "hand"])], fill=(shirt if not swimwear and rng.random() < 0.5 else skin) + (255,),
               width=lw_arm, joint="curve")
    # neck + head
    hc = P(j["head"])
    r = 0.075 * sc
    d.line([P(j["neck"]), (hc[0], hc[1] + r)], fill=skin + (255,), width=max(1, int(0.05 * sc)))
    d.ellipse([hc[0] - r * 0.85, hc[1] - r, hc[0] + r * 0.85, hc[1] + r], fill=skin + (255,))
    d.pieslice([hc[0] - r * 0.9, hc[1] - r * 1.05, hc[0] + r * 0.9, hc[1] + r * 0.6], 180, 360, fill=hair + (255,))
    if pose == "swim" and rng.random() < 0.5:  # swim cap
        cap = tuple(int(c) for c in _jit(rng, CLOTH[int(rng.integers(len(CLOTH)))], 20))
        d.pieslice([hc[0] - r * 0.9, hc[1] - r * 1.05, hc[0] + r * 0.9, hc[1] + r * 0.6], 180, 360, fill=cap + (255,))
    arr = np.asarray(cv).copy()
    if cut is not None:  # submerge: everything below the waterline is removed
        wl = int(S + cut * sc)
        arr[wl:] = 0
    im = Image.fromarray(arr, "RGBA")
    im = im.crop((0, 0, pw - pw % S, (im.height // S) * S)).reduce(S)  # exact box filter
    a = np.asarray(im)
    ys, xs = np.nonzero(a[..., 3] > 0)
    if len(ys) == 0:
        return None
    a = a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return a


def _composite(img, sprite, x, y):
    """Alpha-composites an RGBA sprite into float img at top-left (x, y), clipped.
    Returns the visible alpha mask bbox (x, y, w, h) in image coords or None, and the mask."""
    H, W = img.shape[:2]
    h, w = sprite.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    if x1 <= x0 or y1 <= y0:
        return None, None
    sp = sprite[y0 - y:y1 - y, x0 - x:x1 - x].astype(np.float32)
    a = sp[..., 3:4] / 255.0
    img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + sp[..., :3] * a
    m = sp[..., 3] > 0
    ys, xs = np.nonzero(m)
    if len(ys) == 0:
        return None, None
    box = (x0 + xs.min(), y0 + ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    return box, (x0, y0, m)


def _distractor(rng, img, x, y, size, water):
    """Non-person clutter: rocks, buoys, boats, birds, posts, bins."""
    d = Image.new("RGBA", (int(size * 3) + 4, int(size * 3) + 4), (0, 0, 0, 0))
    dr = ImageDraw.Draw(d)
    kind = int(rng.integers(5))
    col = tuple(int(c) for c in _jit(rng, CLOTH[int(rng.integers(len(CLOTH)))], 40)) + (255,)
    s = size
    if kind == 0:  # blob / rock / buoy
        dr.ellipse([2, 2, 2 + s * rng.uniform(0.5, 1.5), 2 + s * rng.uniform(0.4, 1.0)], fill=col)
    elif kind == 1:  # boat
        dr.polygon([(2, 2 + s * 0.3), (2 + s * 2.5, 2 + s * 0.3), (2 + s * 2.1, 2 + s * 0.8), (2 + s * 0.4, 2 + s * 0.8)], fill=col)
        if rng.random() < 0.5:
            dr.rectangle([2 + s * 0.8, 2, 2 + s * 1.5, 2 + s * 0.3], fill=(240, 240, 240, 255))
    elif kind == 2:  # post / pole
        dr.rectangle([2, 2, 2 + max(1, s * 0.15), 2 + s * 1.5], fill=col)
    elif kind == 3:  # bird / small streak
        dr.line([(2, 2 + s * 0.3), (2 + s * 0.5, 2), (2 + s, 2 + s * 0.3)], fill=col, width=max(1, int(s * 0.1)))
    else:  # umbrella / towel
        if water:
            dr.ellipse([2, 2, 2 + s, 2 + s * 0.5], fill=col)
        else:
            dr.rectangle([2, 2, 2 + s * rng.uniform(0.8, 2), 2 + s * rng.uniform(0.4, 1)], fill=col)
    _composite(img, np.asarray(d), x, y)


@dataclass
class Scene:
    image: np.ndarray                      # uint8 HxWx3 after degradations
    anns: list = field(default_factory=list)  # dicts with bbox, ignore, uncertain, iscrowd
    masks: list = field(default_factory=list)  # (x0, y0, bool mask) per person annotation (None for crowds)
    scene: str = ""


def _sample_height(rng, y, H, lo, hi):
    """Person height: log-uniform, shrunk with distance (top of the frame = far)."""
    persp = 0.45 + 0.75 * (y / H)
    h = math.exp(rng.uniform(math.log(lo), math.log(hi))) * persp
    return float(np.clip(h, 2.0, 40.0))


def render_scene(seed, idx=0, size=(1280, 720), min_h=2.5, max_h=34.0, degrade=True):
    """Renders one image with its annotations. Deterministic in (seed, idx, size)."""
    rng = np.random.default_rng([int(seed), int(idx), 7919])
    W, H = size
    img, scene, zones = _background(rng, W, H)
    anns, masks = [], []
    # clutter first (people may stand in front of it)
    for _ in range(int(rng.integers(5, 40))):
        z = zones[int(rng.integers(len(zones)))]
        y = int(rng.integers(z.y0, max(z.y0 + 1, z.y1)))
        _distractor(rng, img, int(rng.integers(0, W)), y, rng.uniform(2, 16) * (0.5 + y / H), z.kind == "water")
    occupied = []
    # crowd (ignore region)
    if rng.random() < 0.3:
        z = zones[int(rng.integers(len(zones)))]
        cw, ch = int(rng.integers(60, 220)), int(rng.integers(30, 90))
        cx0 = int(rng.integers(0, max(1, W - cw)))
        cy0 = int(rng.integers(z.y0, max(z.y0 + 1, z.y1 - ch)))
        xs, ys = [], []
        for _ in range(int(rng.integers(15, 45))):
            px, py = cx0 + int(rng.integers(0, cw)), cy0 + int(rng.integers(0, ch))
            hh = _sample_height(rng, py, H, 4, 12)
            pose = "swim" if z.kind == "water" else ["stand", "walk"][int(rng.integers(2))]
            sp = render_person(rng, hh, pose, rng.uniform(0, 6.28), cut=rng.uniform(0.25, 0.45) if pose == "swim" else None)
            if sp is None:
                continue
            box, _ = _composite(img, sp, px - sp.shape[1] // 2, py - sp.shape[0])
            if box:
                xs += [box[0], box[0] + box[2]]
                ys += [box[1], box[1] + box[3]]
        if xs:
            bx = (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
            anns.append(dict(bbox=[float(v) for v in bx], ignore=1, iscrowd=1, uncertain=0))
            masks.append(None)
            occupied.append(bx)
    # individual people
    n = int(rng.integers(3, 45))
    for _ in range(n):
        z = zones[int(rng.integers(len(zones)))]
        if z.y1 - z.y0 < 10:
            continue
        py = int(rng.integers(z.y0 + 5, z.y1))
        px = int(rng.integers(0, W))
        hh = _sample_height(rng, py, H, min_h, max_h)
        if z.kind == "water":
            pose, cut = ("swim", rng.uniform(0.2, 0.5)) if rng.random() < 0.85 else ("stand", rng.uniform(0.5, 0.8))
        else:
            pose, cut = ["stand", "walk", "walk", "stand"][int(rng.integers(4))], None
        sp = render_person(rng, hh, pose, rng.uniform(0, 6.28), cut)
        if sp is None:
            continue
        if z.kind == "land" and rng.random() < 0.12:  # lying on the beach / grass
            sp = np.ascontiguousarray(np.rot90(sp, k=int(rng.choice([1, 3]))))
        x, y = px - sp.shape[1] // 2, py - sp.shape[0]
        # avoid heavy overlap with existing people / crowd
        bb = (x, y, sp.shape[1], sp.shape[0])
        if any(_iou(bb, o) > 0.3 for o in occupied):
            continue
        box, m = _composite(img, sp, x, y)
        if box is None or box[2] * box[3] < 2:
            continue
        occupied.append(box)
        unc = int(box[3] < 4 and rng.random() < 0.5)
        # partial occlusion by a foreground object (label stays the full person box)
        if rng.random() < 0.1 and box[3] >= 6:
            oc = Image.new("RGBA", (box[2] + 2, box[3] + 2), (0, 0, 0, 0))
            od = ImageDraw.Draw(oc)
            col = tuple(int(c) for c in _jit(rng, CLOTH[int(rng.integers(len(CLOTH)))], 30)) + (255,)
            frac = rng.uniform(0.25, 0.5)
            if rng.random() < 0.5:
                od.rectangle([0, (1 - frac) * box[3], box[2] + 2, box[3] + 2], fill=col)
            else:
                od.rectangle([0, 0, frac * box[2], box[3] + 2], fill=col)
            _composite(img, np.asarray(oc), box[0] - 1 if rng.random() < 0.5 else box[0], box[1])
            unc = int(unc or frac > 0.45)
        anns.append(dict(bbox=[float(v) for v in box], ignore=0, iscrowd=0, uncertain=unc))
        masks.append(m)
    # degradations
    out = np.clip(img, 0, 255)
    if degrade:
        pil = Image.fromarray(out.astype(np.uint8), "RGB")
        r = rng.uniform(0, 1.1)
        if r > 0.3:
            pil = pil.filter(ImageFilter.GaussianBlur(radius=float(r)))
        out = np.asarray(pil, np.float32)
        sigma = rng.uniform(0, 7)
        out = out + rng.normal(0, sigma, out.shape).astype(np.float32)
        out = np.clip(out, 0, 255)
    out = out.astype(np.uint8)
    if degrade:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=int(rng.integers(35, 95)))
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return Scene(out, anns, masks, scene)


def _iou(a, b):
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw, ih = min(ax1, bx1) - max(a[0], b[0]), min(ay1, by1) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def coco_dataset(scenes_files):
    """Builds the COCO-style dict from [(file_name, Scene)]."""
    images, anns = [], []
    aid = 1
    for iid, (fn, sc) in enumerate(scenes_files, start=1):
        h, w = sc.image.shape[:2] if sc.image is not None else sc.hw
        images.append(dict(id=iid, file_name=fn, width=w, height=h, scene=sc.scene))
        for a in sc.anns:
            x, y, bw, bh = a["bbox"]
            anns.append(dict(id=aid, image_id=iid, category_id=1, bbox=[x, y, bw, bh], area=bw * bh,
                             iscrowd=a["iscrowd"], ignore=a["ignore"], uncertain=a["uncertain"]))
            aid += 1
    return dict(images=images, annotations=anns, categories=[dict(id=1, name="person")])


def _write_one(args):
    """Renders and saves image `i`; returns (file name, Scene without pixels or masks)."""
    out, seed, i, size, quality = args
    sc = render_scene(seed, i, size)
    fn = f"{seed:04d}_{i:06d}.jpg"
    Image.fromarray(sc.image).save(os.path.join(out, "images", fn), quality=quality)
    sc.masks = []
    sc.hw, sc.image = sc.image.shape[:2], None  # only the size travels back from a worker
    return fn, sc


def write_dataset(out, num, seed, size, quality=92, start=0, jobs=1):
    """Renders `num` images to out/images/*.jpg and out/annotations.json.  Every image depends only
    on (seed, index), so `jobs` worker processes write the same bytes as one."""
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    tasks = [(out, seed, i, size, quality) for i in range(start, start + num)]
    if jobs > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(jobs) as pool:
            items = pool.map(_write_one, tasks, chunksize=max(1, num // (4 * jobs)))
    else:
        items = [_write_one(t) for t in tasks]
    data = coco_dataset(items)
    with open(os.path.join(out, "annotations.json"), "w") as f:
        json.dump(data, f)
    return data


def render_clip(out_dir, frames, seed, size=(640, 360), people=14):
    """Writes PNG frames of people walking / swimming across one static scene."""
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng([int(seed), 424242])
    W, H = size
    bg, scene, zones = _background(rng, W, H)
    for _ in range(15):
        z = zones[int(rng.integers(len(zones)))]
        y = int(rng.integers(z.y0, max(z.y0 + 1, z.y1)))
        _distractor(rng, bg, int(rng.integers(0, W)), y, rng.uniform(2, 10), z.kind == "water")
    actors = []
    for _ in range(people):
        z = zones[int(rng.integers(len(zones)))]
        y = float(rng.integers(z.y0 + 10, max(z.y0 + 11, z.y1)))
        swim = z.kind == "water"
        actors.append(dict(x=float(rng.uniform(0, W)), y=y, vx=float(rng.uniform(-1.5, 1.5)), vy=float(rng.uniform(-0.3, 0.3)),
                           h=_sample_height(rng, y, H, 6, 22), swim=swim, phase=float(rng.uniform(0, 6.28)),
                           seed=int(rng.integers(1 << 30)), cut=float(rng.uniform(0.25, 0.45))))
    for f in range(frames):
        img = bg.copy()
        for a in actors:
            prng = np.random.default_rng(a["seed"])  # same clothes every frame
            pose = "swim" if a["swim"] else "walk"
            sp = render_person(prng, a["h"], pose, a["phase"] + 0.35 * f, a["cut"] if a["swim"] else None)
            if sp is not None:
                if a["vx"] < 0:
                    sp = sp[:, ::-1]
                _composite(img, np.ascontiguousarray(sp), int(a["x"] + a["vx"] * f) % W - sp.shape[1] // 2,
                           int(a["y"] + a["vy"] * f) - sp.shape[0])
        frng = np.random.default_rng([int(seed), f])
        img = np.clip(img + frng.normal(0, 2.5, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(out_dir, f"{f:05d}.png"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="output directory (images/ + annotations.json)")
    ap.add_argument("--num", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="first image index")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--quality", type=int, default=92, help="JPEG quality of the written files")
    ap.add_argument("--clip", help="write clip frames (PNG) to this directory instead")
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (same output for any number)")
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    if a.clip:
        render_clip(a.clip, a.frames, a.seed, (w, h))
        print(f"wrote {a.frames} frames to {a.clip}")
        return
    if not a.out:
        ap.error("--out is required")
    d = write_dataset(a.out, a.num, a.seed, (w, h), a.quality, a.start, a.jobs)
    n_p = sum(1 for x in d["annotations"] if not x["ignore"])
    print(f"wrote {len(d['images'])} images, {n_p} people, "
          f"{len(d['annotations']) - n_p} ignore regions to {a.out}")


if __name__ == "__main__":
    main()
