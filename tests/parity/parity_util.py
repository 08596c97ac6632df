"""Helpers shared by the parity and bad-input tests: locating and running `speck`, building the
op models, ONNX Runtime reference runs, and the output comparison."""
from __future__ import annotations

import os
import re
import subprocess
import zlib
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

RTOL = 1e-4  # max abs error <= RTOL * max(1, max(ref) - min(ref))


def speck_bin() -> Path:
    p = Path(os.environ.get("SPECK_BIN", "target/debug/speck"))
    return p if p.is_absolute() else ROOT / p


def require_speck() -> Path:
    """The speck binary; a missing binary fails the test loudly (a parity suite that skips
    without an engine would read as green)."""
    import pytest

    p = speck_bin()
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(f"speck binary not found at {p}: run `cargo build` (or set SPECK_BIN)", pytrace=False)
    return p


def run_speck(args: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs speck with `args`; a hang past `timeout` seconds fails the test."""
    import pytest

    cmd = [str(require_speck())] + [str(a) for a in args]
    env = dict(os.environ)
    env.pop("RUST_BACKTRACE", None)
    try:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, cwd=str(ROOT), env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"speck hung (> {timeout} s): {' '.join(cmd)}", pytrace=False)


def describe(proc: subprocess.CompletedProcess) -> str:
    return (f"command: {' '.join(map(str, proc.args))}\nexit code: {proc.returncode}\n"
            f"stderr:\n{proc.stderr.decode(errors='replace')[-4000:]}\n"
            f"stdout:\n{proc.stdout.decode(errors='replace')[-1000:]}")


def assert_no_panic(proc: subprocess.CompletedProcess) -> None:
    err = proc.stderr.decode(errors="replace") + proc.stdout.decode(errors="replace")
    assert "panicked" not in err, "speck panicked\n" + describe(proc)
    assert proc.returncode >= 0, f"speck was killed by signal {-proc.returncode}\n" + describe(proc)
    assert proc.returncode != 101, "speck exited 101 (Rust panic exit code)\n" + describe(proc)


def assert_clean_failure(proc: subprocess.CompletedProcess, must_contain: Sequence[str] = ()) -> str:
    """Non-zero exit, no panic, exactly one non-empty line on stderr; returns that line."""
    assert_no_panic(proc)
    assert proc.returncode != 0, "speck should have failed but exited 0\n" + describe(proc)
    lines = [ln for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected exactly one line on stderr, got {len(lines)}\n" + describe(proc)
    msg = lines[0]
    for s in must_contain:
        assert s.lower() in msg.lower(), f"error message should mention {s!r}: {msg!r}\n" + describe(proc)
    return msg


def sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def seed_of(name: str) -> int:
    return zlib.crc32(name.encode())


def graph_io(model_path: Path):
    """(inputs [(name, shape)], output names), inputs in graph order excluding initializers."""
    import onnx

    m = onnx.load(str(model_path), load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    ins = []
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        shape = [d.dim_value for d in dims]
        assert all(d.HasField("dim_value") for d in dims), f"{model_path}: input {vi.name} is not static"
        ins.append((vi.name, shape))
    return ins, [o.name for o in m.graph.output], m


def random_inputs(model_path: Path, key: str) -> List[np.ndarray]:
    ins, _, _ = graph_io(model_path)
    rng = np.random.default_rng(seed_of(key))
    return [rng.standard_normal(shape).astype(np.float32) for _, shape in ins]


def ort_run(model_path: Path, inputs: Sequence[np.ndarray]) -> Dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    assert len(names) == len(inputs), (names, len(inputs))
    outs = sess.run(None, dict(zip(names, inputs)))
    return {o.name: v for o, v in zip(sess.get_outputs(), outs)}


def write_inputs(inputs: Sequence[np.ndarray], d: Path) -> List[Path]:
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, a in enumerate(inputs):
        p = d / f"in{i}.npy"
        np.save(p, a)
        paths.append(p)
    return paths


def speck_infer(model_path: Path, inputs: Sequence[np.ndarray], workdir: Path, extra: Sequence[str] = (),
                timeout: float = 120):
    in_paths = write_inputs(inputs, workdir / "in")
    out = workdir / "out"
    out.mkdir(parents=True, exist_ok=True)
    proc = run_speck(["infer", model_path, *in_paths, "--out", out, *extra], timeout=timeout)
    return proc, out


def compare(name: str, ref: np.ndarray, got: np.ndarray) -> None:
    """Same shape and dtype, NaN/Inf in the same places, max abs error <= RTOL * max(1, range)."""
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != ORT {ref.shape}"
    assert got.dtype == ref.dtype, f"{name}: dtype {got.dtype} != ORT {ref.dtype}"
    if not np.issubdtype(ref.dtype, np.floating):
        assert np.array_equal(got, ref), f"{name}: values differ"
        return
    r, g = ref.astype(np.float64), got.astype(np.float64)
    nan_r, nan_g = np.isnan(r), np.isnan(g)
    assert np.array_equal(nan_r, nan_g), (
        f"{name}: NaN positions differ (ORT {int(nan_r.sum())} NaNs, speck {int(nan_g.sum())}; "
        f"first mismatch at {np.argwhere(nan_r != nan_g)[0].tolist()})")
    inf_r = np.isinf(r)
    assert np.array_equal(inf_r, np.isinf(g)) and np.array_equal(r[inf_r], g[inf_r]), f"{name}: Inf values differ"
    fin = np.isfinite(r)
    if not fin.any():
        return
    rng = float(r[fin].max() - r[fin].min())
    tol = RTOL * max(1.0, rng)
    err = np.where(fin, np.abs(r - g), 0.0)
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    max_err = float(err[worst])
    assert max_err <= tol, (
        f"{name}: max abs error {max_err:.3g} > tol {tol:.3g} (ORT range {rng:.4g}); worst at index "
        f"{list(map(int, worst))}: ORT {r[worst]:.7g}, speck {g[worst]:.7g}; "
        f"{int((err > tol).sum())} of {err.size} elements out of tolerance")


def check_parity(model_path: Path, inputs: Sequence[np.ndarray], workdir: Path, extra: Sequence[str] = (),
                 timeout: float = 120) -> None:
    ref = ort_run(model_path, inputs)
    proc, out = speck_infer(model_path, inputs, workdir, extra, timeout)
    assert_no_panic(proc)
    assert proc.returncode == 0, "speck infer failed\n" + describe(proc)
    produced = sorted(p.name for p in out.iterdir())
    for oname, r in ref.items():
        f = out / f"{sanitize(oname)}.npy"
        assert f.is_file(), f"output {oname!r}: expected file {f.name}, speck wrote {produced}"
        compare(oname, r, np.load(f, allow_pickle=False))
