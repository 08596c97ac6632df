#!/usr/bin/env python3
"""Compare speck's int8 quantizer with ONNX Runtime's `quantize_static` on one model and one
calibration set, in one run.

For every configuration, `speck quantize` (or ORT's quantize_static) writes a QDQ model; then
ONNX Runtime runs the float model and every QDQ model on the same preprocessed frames and the
script prints the output SQNR (dB, higher is better) of each QDQ model against the float model,
plus the file sizes, as a Markdown table.

    python quantize/compare_ort.py models/reference/mnv3s_224.onnx examples/data/images \
        --speck target/release/speck --work /tmp/qcmp

Frames are preprocessed like speck does (letterbox with pad 114, bilinear, then
(x/255 - mean) / std from the model's metadata; mean 0 / std 1 when it has none).
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


def preprocess(path: Path, h: int, w: int, meta: dict) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    fw, fh = img.size
    if meta.get("resize", "letterbox") == "stretch":
        nw, nh = w, h
    else:
        s = min(w / fw, h / fh)
        nw, nh = round(fw * s), round(fh * s)
    canvas = np.full((h, w, 3), 114, dtype=np.float32)
    px, py = (w - nw) // 2, (h - nh) // 2
    canvas[py:py + nh, px:px + nw] = np.asarray(img.resize((nw, nh), Image.BILINEAR), dtype=np.float32)
    mean = np.array([float(v) for v in meta["mean"].split(",")] if "mean" in meta else [0, 0, 0], np.float32)
    std = np.array([float(v) for v in meta["std"].split(",")] if "std" in meta else [1, 1, 1], np.float32)
    x = (canvas / 255.0 - mean) / std
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def frames_for(model_path: Path, calib: Path) -> tuple[str, list[np.ndarray]]:
    m = onnx.load(str(model_path))
    inits = {i.name for i in m.graph.initializer}
    inp = [i for i in m.graph.input if i.name not in inits][0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    paths = sorted(p for p in calib.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    return inp.name, [preprocess(p, dims[2], dims[3], metadata(m)) for p in paths]


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
    args = ap.parse_args()
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
    name, frames = frames_for(args.model, args.calib)
    ref = run_all(args.model, name, frames)
    rows = []
    for label, flags in configs:
        out = args.work / (label.replace(" ", "_").replace(",", "").replace("+", "").replace(".", "") + ".onnx")
        rep = out.with_suffix(".json")
        t0 = time.time()
        proc = subprocess.run([str(args.speck), "quantize", str(args.model), "--calib", str(args.calib), "-o", str(out),
                               "--report", str(rep)] + flags, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{label}: speck failed: {proc.stderr.strip()}", file=sys.stderr)
            return 1
        secs = time.time() - t0
        speck_report = json.loads(rep.read_text())
        speck_out_db = min(o["sqnr_db"] for o in speck_report["outputs"])
        test = run_all(out, name, frames)
        rows.append(dict(config=label, sqnr_db=sqnr_db(ref, test), speck_measured_db=speck_out_db,
                         top1=top1_agreement(ref, test), bytes=out.stat().st_size, seconds=secs))

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = args.work / "ort_pre.onnx"
    quant_pre_process(str(args.model), str(pre), skip_symbolic_shape=True)
    for label, method in [("ORT quantize_static minmax, per-channel", CalibrationMethod.MinMax),
                          ("ORT quantize_static entropy, per-channel", CalibrationMethod.Entropy),
                          ("ORT quantize_static percentile, per-channel", CalibrationMethod.Percentile)]:
        out = args.work / (label.replace(" ", "_").replace(",", "") + ".onnx")
        t0 = time.time()
        quantize_static(str(pre), str(out), Reader(name, frames), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=method)
        secs = time.time() - t0
        test = run_all(out, name, frames)
        rows.append(dict(config=label, sqnr_db=sqnr_db(ref, test), speck_measured_db=None,
                         top1=top1_agreement(ref, test), bytes=out.stat().st_size, seconds=secs))

    print(f"model {args.model} ({args.model.stat().st_size / 1e6:.2f} MB float), {len(frames)} frames from {args.calib}")
    print("| configuration | output SQNR, ORT run (dB) | speck fake-quant SQNR (dB) | top-1 agrees with float | size (MB) | time (s) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        sp = "-" if r["speck_measured_db"] is None else f"{r['speck_measured_db']:.1f}"
        print(f"| {r['config']} | {r['sqnr_db']:.1f} | {sp} | {r['top1'] * 100:.0f}% | {r['bytes'] / 1e6:.2f} | {r['seconds']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
