#!/usr/bin/env python3
"""Compare speck's int8 quantizer with ONNX Runtime's `quantize_static` on one model and one
calibration set, in one run.

For every configuration, `speck quantize` (or ORT's quantize_static) writes a QDQ model; then
ONNX Runtime runs the float model and every QDQ model on the same preprocessed frames and the
script prints the output SQNR (dB, higher is better) of each QDQ model against the float model,
plus the file sizes, as a Markdown table.

    python quantize/compare_ort.py models/reference/mnv3s_224.onnx examples/data/images \
        --speck target/release/speck --work /tmp/qcmp

With `--val GT.json --images DIR` every model (the float one included) is also scored on that
labelled set by `speck eval` (speck's int8 engine runs each QDQ file, ORT's too), so the table
gets AP50 columns: accuracy, not only SQNR.

Frames are preprocessed like speck does (letterbox with pad 114, bilinear, then
(x/255 - mean) / std from the model's metadata; mean 0 / std 1 when it has none). A model
whose metadata names a `tile` (the detector) is calibrated and measured on tiles cut as
`speck quantize` and `speck detect` cut them (overlap 0.2, last tile on the far edge), for ORT's
quantize_static too, unless --no-tile.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp"}


def metadata(model: onnx.ModelProto) -> dict:
    return {p.key: p.value for p in model.metadata_props}


def preprocess(img: Image.Image, h: int, w: int, meta: dict) -> np.ndarray:
    fw, fh = img.size
    if meta.get("resize", "letterbox") == "stretch":
        nw, nh = w, h
    else:
        s = min(w / fw, h / fh)
        nw, nh = round(fw * s), round(fh * s)
    canvas = np.full((h, w, 3), 114, dtype=np.float32)
    px, py = (w - nw) // 2, (h - nh) // 2
    resized = img if (nw, nh) == (fw, fh) else img.resize((nw, nh), Image.BILINEAR)
    canvas[py:py + nh, px:px + nw] = np.asarray(resized, dtype=np.float32)
    mean = np.array([float(v) for v in meta["mean"].split(",")] if "mean" in meta else [0, 0, 0], np.float32)
    std = np.array([float(v) for v in meta["std"].split(",")] if "std" in meta else [1, 1, 1], np.float32)
    x = (canvas / 255.0 - mean) / std
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def axis_starts(size: int, tile: int, overlap: float) -> list[int]:
    """speck's `tiling::axis_starts`: step floor(tile * (1 - overlap)), last tile on the far edge."""
    if size <= tile:
        return [0]
    step = max(int(np.floor(tile * (1.0 - overlap))), 1)
    starts = []
    s = 0
    while s + tile < size:
        starts.append(s)
        s += step
    return starts + [size - tile]


def regions(img: Image.Image, tile: tuple[int, int] | None, overlap: float = 0.2) -> list[Image.Image]:
    """The whole image, or its tiles as speck cuts them."""
    if tile is None:
        return [img]
    fw, fh = img.size
    tw, th = min(tile[0], fw), min(tile[1], fh)
    return [img.crop((x, y, x + tw, y + th))
            for y in axis_starts(fh, th, overlap) for x in axis_starts(fw, tw, overlap)]


def frames_for(model_path: Path, calib: Path, tiled: bool) -> tuple[str, list[np.ndarray]]:
    m = onnx.load(str(model_path))
    meta = metadata(m)
    inits = {i.name for i in m.graph.initializer}
    inp = [i for i in m.graph.input if i.name not in inits][0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    tile = tuple(int(v) for v in meta["tile"].split("x")) if tiled and "tile" in meta else None
    paths = sorted(p for p in calib.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    frames = []
    for p in paths:
        img = Image.open(p).convert("RGB")
        frames += [preprocess(r, dims[2], dims[3], meta) for r in regions(img, tile)]
    return inp.name, frames


def ap_of(speck: Path, model: Path, val: Path, images: Path, threads: int) -> dict:
    """AP50 of `model` on the labelled set, by `speck eval` (tiled as the model's metadata says)."""
    proc = subprocess.run([str(speck), "eval", "--model", str(model), "--gt", str(val), "--images", str(images),
                           "--json", "--threads", str(threads)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"speck eval {model}: {proc.stderr.strip()}")
    r = json.loads(proc.stdout)
    return dict(ap50=r["all"]["ap50"], ap50_tiny=r["tiny"]["ap50"], coco_ap50=r["coco_ap50"])


def run_all(path: Path, name: str, frames: list[np.ndarray]) -> list[list[np.ndarray]]:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return [sess.run(None, {name: f}) for f in frames]


def sqnr_db(ref: list[list[np.ndarray]], test: list[list[np.ndarray]]) -> float:
    sig = sum(float(np.sum(r.astype(np.float64) ** 2)) for rs in ref for r in rs)
    noise = sum(float(np.sum((r.astype(np.float64) - t) ** 2)) for rs, ts in zip(ref, test) for r, t in zip(rs, ts))
    return 200.0 if noise == 0 else 10 * np.log10(sig / noise)


def top1_agreement(ref, test) -> float:
    """Share of frames whose arg-max of the first output agrees (classifier outputs)."""
    agree = [int(np.argmax(r[0]) == np.argmax(t[0])) for r, t in zip(ref, test)]
    return float(np.mean(agree))


class Reader:
    def __init__(self, name, frames):
        self.it = iter([{name: f} for f in frames])

    def get_next(self):
        return next(self.it, None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("calib", type=Path)
    ap.add_argument("--speck", type=Path, default=Path("target/release/speck"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/speck-qcmp"))
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument("--val", type=Path, help="labelled set (COCO JSON): AP50 of every model by speck eval")
    ap.add_argument("--images", type=Path, help="folder of the --val images")
    ap.add_argument("--threads", type=int, default=2, help="threads of speck eval")
    ap.add_argument("--no-tile", action="store_true", help="whole frames even when the model asks for tiles")
    ap.add_argument("--resume", action="store_true",
                    help="reuse QDQ models already in --work (their quantization time is then not shown)")
    args = ap.parse_args()
    if (args.val is None) != (args.images is None):
        ap.error("--val and --images go together")
    score = (lambda m: ap_of(args.speck, m, args.val, args.images, args.threads)) if args.val else (lambda m: {})
    args.work.mkdir(parents=True, exist_ok=True)

    configs = [
        ("speck minmax, per-tensor", ["--method", "minmax", "--per-tensor"]),
        ("speck minmax, per-tensor, CLE", ["--method", "minmax", "--per-tensor", "--cle"]),
        ("speck minmax, per-tensor, CLE + bias corr.", ["--method", "minmax", "--per-tensor", "--cle", "--bias-correction"]),
        ("speck minmax, per-channel", ["--method", "minmax"]),
        ("speck minmax, per-channel, CLE + bias corr.", ["--method", "minmax", "--cle", "--bias-correction"]),
        ("speck percentile 99.99, per-channel", ["--method", "percentile"]),
        ("speck entropy, per-channel", ["--method", "entropy"]),
        ("speck mse, per-channel", ["--method", "mse"]),
    ]
    def save(rows: list[dict]) -> None:
        """The rows so far, so a run that dies late keeps what it measured."""
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))

    name, frames = frames_for(args.model, args.calib, not args.no_tile)
    ref = run_all(args.model, name, frames)
    rows = [dict(config="float (no quantization)", sqnr_db=None, speck_measured_db=None, top1=1.0,
                 bytes=args.model.stat().st_size, seconds=0.0, **score(args.model))]
    for label, flags in configs:
        out = args.work / (label.replace(" ", "_").replace(",", "").replace("+", "").replace(".", "") + ".onnx")
        rep = out.with_suffix(".json")
        t0 = time.time()
        secs = None
        if not (args.resume and out.exists() and rep.exists()):
            tile_flag = ["--no-tile"] if args.no_tile else []
            proc = subprocess.run([str(args.speck), "quantize", str(args.model), "--calib", str(args.calib), "-o",
                                   str(out), "--report", str(rep)] + tile_flag + flags, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{label}: speck failed: {proc.stderr.strip()}", file=sys.stderr)
                return 1
            secs = time.time() - t0
        speck_report = json.loads(rep.read_text())
        speck_out_db = min(o["sqnr_db"] for o in speck_report["outputs"])
        test = run_all(out, name, frames)
        rows.append(dict(config=label, sqnr_db=sqnr_db(ref, test), speck_measured_db=speck_out_db,
                         top1=top1_agreement(ref, test), bytes=out.stat().st_size, seconds=secs, **score(out)))
        print(f"done: {label}", file=sys.stderr)
        save(rows)

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = args.work / "ort_pre.onnx"
    quant_pre_process(str(args.model), str(pre), skip_symbolic_shape=True)
    for label, method in [("ORT quantize_static minmax, per-channel", CalibrationMethod.MinMax),
                          ("ORT quantize_static entropy, per-channel", CalibrationMethod.Entropy),
                          ("ORT quantize_static percentile, per-channel", CalibrationMethod.Percentile)]:
        out = args.work / (label.replace(" ", "_").replace(",", "") + ".onnx")
        t0 = time.time()
        secs = None
        if not (args.resume and out.exists()):
            # Histogram calibrators keep every intermediate output of every frame unless told to
            # fold them in batches (entropy on the detector's 204 tiles ran out of 24 GB).
            quantize_static(str(pre), str(out), Reader(name, frames), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=method, extra_options={"CalibMaxIntermediateOutputs": 8})
            secs = time.time() - t0
        test = run_all(out, name, frames)
        rows.append(dict(config=label, sqnr_db=sqnr_db(ref, test), speck_measured_db=None,
                         top1=top1_agreement(ref, test), bytes=out.stat().st_size, seconds=secs, **score(out)))
        print(f"done: {label}", file=sys.stderr)
        save(rows)

    print(f"model {args.model} ({args.model.stat().st_size / 1e6:.2f} MB float), {len(frames)} model inputs "
          f"from {args.calib}" + (f"; AP on {args.val}" if args.val else ""))
    ap_cols = " AP50 all | AP50 tiny | COCO AP50 |" if args.val else ""
    print("| configuration | output SQNR, ORT run (dB) | speck fake-quant SQNR (dB) | top-1 agrees with float |"
          + ap_cols + " size (MB) | time (s) |")
    print("|---" * (6 + (3 if args.val else 0)) + "|")
    for r in rows:
        sq = "-" if r["sqnr_db"] is None else f"{r['sqnr_db']:.1f}"
        secs_txt = "-" if r["seconds"] is None else f"{r['seconds']:.1f}"
        sp = "-" if r["speck_measured_db"] is None else f"{r['speck_measured_db']:.1f}"
        aps = "".join(f" {r[k] * 100:.2f} |" for k in ("ap50", "ap50_tiny", "coco_ap50")) if args.val else ""
        print(f"| {r['config']} | {sq} | {sp} | {r['top1'] * 100:.0f}% |{aps} {r['bytes'] / 1e6:.2f} | {secs_txt} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
