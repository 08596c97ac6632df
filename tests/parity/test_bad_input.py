"""speck must fail cleanly on bad input: non-zero exit, exactly one line on stderr, no panic, no
signal, no hang (60 s). Corrupted models may also succeed; they must never panic."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_op_models as M  # noqa: E402
from parity_util import (ROOT, assert_clean_failure, assert_no_panic, random_inputs, require_speck,  # noqa: E402
                         run_speck, write_inputs)

TIMEOUT = 60


@pytest.fixture(scope="session")
def speck():
    return require_speck()


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_models")
    paths = {k: Path(v) for k, v in M.build_all(str(d), ["conv_3x3", "block_residual", "block_mbv3_bneck",
                                                          "add_inputs_same"]).items()}
    for name, fn in [("unsupported_nms", M.unsupported_nms_model), ("custom_domain", M.custom_domain_model)]:
        p = d / f"{name}.onnx"
        p.write_bytes(fn().SerializeToString(deterministic=True))
        paths[name] = p
    return paths


def _infer(model, inputs, out, extra=()):
    out.mkdir(parents=True, exist_ok=True)
    return run_speck(["infer", model, *inputs, "--out", out, *extra], timeout=TIMEOUT)


def _good_inputs(model: Path, tmp_path: Path, key: str = "bad"):
    return write_inputs(random_inputs(model, key), tmp_path / "in")


# --------------------------------------------------------------------------------------------
# Model files
# --------------------------------------------------------------------------------------------
def test_missing_model(speck, models, tmp_path):
    inputs = _good_inputs(models["conv_3x3"], tmp_path)
    missing = tmp_path / "no_such_model.onnx"
    assert_clean_failure(_infer(missing, inputs, tmp_path / "out"), must_contain=["no_such_model.onnx"])


def test_text_file_as_onnx(speck, models, tmp_path):
    p = tmp_path / "readme.onnx"
    p.write_text("This is not an ONNX model.\nJust some text.\n" * 20)
    inputs = _good_inputs(models["conv_3x3"], tmp_path)
    assert_clean_failure(_infer(p, inputs, tmp_path / "out"))


def test_empty_file_as_onnx(speck, models, tmp_path):
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    inputs = _good_inputs(models["conv_3x3"], tmp_path)
    assert_clean_failure(_infer(p, inputs, tmp_path / "out"))


def _truncation_sources():
    out = [("block_residual", None)]
    for rel in ["models/reference/mnv3s_224.onnx", "models/speck-tiny.onnx"]:
        out.append((Path(rel).stem, ROOT / rel))
    return out


@pytest.mark.parametrize("frac", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("source", [s for s, _ in _truncation_sources()])
def test_truncated_model(source, frac, speck, models, tmp_path):
    src = dict(_truncation_sources())[source] or models[source]
    if not src.is_file():
        pytest.skip(f"{src} is absent")
    data = src.read_bytes()
    p = tmp_path / f"{source}_trunc{int(frac * 100)}.onnx"
    p.write_bytes(data[:int(len(data) * frac)])
    inputs = _good_inputs(src, tmp_path)
    assert_clean_failure(_infer(p, inputs, tmp_path / "out"))


@pytest.mark.parametrize("i", range(20))
def test_random_byte_flips(i, speck, models, tmp_path):
    """Either a clean error or success; never a panic, a signal or a hang."""
    src = models["block_mbv3_bneck"]
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(1000 + i)
    n = int(rng.integers(1, 17))
    for pos in rng.choice(len(data), size=n, replace=False):
        data[pos] ^= int(rng.integers(1, 256))
    p = tmp_path / f"flipped_{i}.onnx"
    p.write_bytes(bytes(data))
    proc = _infer(p, _good_inputs(src, tmp_path), tmp_path / "out")
    assert_no_panic(proc)
    if proc.returncode != 0:
        assert_clean_failure(proc)


def test_unsupported_op_nms(speck, models, tmp_path):
    p = models["unsupported_nms"]
    inputs = write_inputs([np.random.default_rng(0).random((1, 7, 4), dtype=np.float32),
                           np.random.default_rng(1).random((1, 1, 7), dtype=np.float32)], tmp_path / "in")
    assert_clean_failure(_infer(p, inputs, tmp_path / "out"), must_contain=["NonMaxSuppression", "my_nms_node"])


def test_unsupported_custom_domain_op(speck, models, tmp_path):
    p = models["custom_domain"]
    inputs = write_inputs([np.zeros((1, 3, 7, 9), np.float32)], tmp_path / "in")
    assert_clean_failure(_infer(p, inputs, tmp_path / "out"), must_contain=["FancyWarp", "fancy_node_7"])


# --------------------------------------------------------------------------------------------
# Input tensors
# --------------------------------------------------------------------------------------------
_EXPECTED_SHAPE = re.compile(r"1\D{1,4}3\D{1,4}7\D{1,4}9")  # [1, 3, 7, 9] / 1x3x7x9 / (1, 3, 7, 9)


@pytest.mark.parametrize("shape", [(1, 3, 9, 7), (1, 3, 7), (1, 3, 7, 10), (2, 3, 7, 9)])
def test_wrong_input_shape(shape, speck, models, tmp_path):
    inputs = write_inputs([np.zeros(shape, np.float32)], tmp_path / "in")
    msg = assert_clean_failure(_infer(models["conv_3x3"], inputs, tmp_path / "out"))
    assert _EXPECTED_SHAPE.search(msg), f"message should mention the expected shape [1, 3, 7, 9]: {msg!r}"


def test_int64_input(speck, models, tmp_path):
    inputs = write_inputs([np.ones((1, 3, 7, 9), np.int64)], tmp_path / "in")
    assert_clean_failure(_infer(models["conv_3x3"], inputs, tmp_path / "out"))


def test_missing_input_file(speck, models, tmp_path):
    missing = tmp_path / "no_such_input.npy"
    assert_clean_failure(_infer(models["conv_3x3"], [missing], tmp_path / "out"), must_contain=["no_such_input.npy"])


def test_text_file_as_npy(speck, models, tmp_path):
    p = tmp_path / "garbage.npy"
    p.write_text("not a numpy file\n")
    assert_clean_failure(_infer(models["conv_3x3"], [p], tmp_path / "out"))


def test_too_few_inputs(speck, models, tmp_path):
    a, _b = _good_inputs(models["add_inputs_same"], tmp_path)
    assert_clean_failure(_infer(models["add_inputs_same"], [a], tmp_path / "out"))


def test_too_many_inputs(speck, models, tmp_path):
    x, = _good_inputs(models["conv_3x3"], tmp_path)
    assert_clean_failure(_infer(models["conv_3x3"], [x, x], tmp_path / "out"))


# --------------------------------------------------------------------------------------------
# speck detect
# --------------------------------------------------------------------------------------------
def test_detect_non_image(speck, tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("definitely not a JPEG\n")
    assert_clean_failure(run_speck(["detect", p, "--json"], timeout=TIMEOUT))


def test_detect_missing_file(speck, tmp_path):
    p = tmp_path / "no_such_image.jpg"
    assert_clean_failure(run_speck(["detect", p, "--json"], timeout=TIMEOUT))


def _sample_image() -> Path:
    return sorted((ROOT / "examples" / "data" / "images").glob("*.jpg"))[0]


@pytest.mark.parametrize("frac", [0.05, 0.5, 0.98])
def test_detect_truncated_jpeg(frac, speck, tmp_path):
    # the JPEG decoder alone fills a cut-short file with grey and succeeds: speck must refuse
    data = _sample_image().read_bytes()
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: int(len(data) * frac)])
    assert_clean_failure(run_speck(["detect", p, "--json"], timeout=TIMEOUT), ["truncated"])


def test_detect_truncated_png(speck, tmp_path):
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    w, h = 64, 48
    rows = b"".join(b"\x00" + np.random.default_rng(1).integers(0, 256, w * 3, dtype=np.uint8).tobytes()
                    for _ in range(h))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    p = tmp_path / "cut.png"
    p.write_bytes(png[: len(png) // 2])
    assert_clean_failure(run_speck(["detect", p, "--json"], timeout=TIMEOUT), ["truncated"])
