#!/usr/bin/env python3
"""Why fp16 Winograd stays F(2x2, 3x3): the error of F(2x2, 3x3) and F(4x4, 3x3) against a
direct 3x3 conv, with the point-wise products in f32 or in binary16 as speck's fp16
microkernel does them (transformed patches and weights rounded to binary16, each
multiply-add rounded to binary16, partial sums of 64 products widened into f32).

    python3 scripts/winograd_fp16_error.py        # numpy only; prints median / max error

One patch of relu-like inputs (32 channels, 8 output channels, He-scaled weights), 200 draws.
"""
import numpy as np


def matrices(t):
    if t == 2:
        g = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])
        bt = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
        at = np.array([[1, 1, 1, 0], [0, 1, -1, -1]])
    else:
        g = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                      [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
        bt = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                       [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]])
        at = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                       [0, 1, -1, 8, -8, 1]])
    return g, bt, at


def errors(t, fp16, rng, c=32, m=8, draws=200, chunk=64):
    g, bt, at = matrices(t)
    p = t + 2
    errs, mags = [], []
    for _ in range(draws):
        d = np.maximum(rng.standard_normal((c, p, p)), 0)
        w = rng.standard_normal((m, c, 3, 3)) * np.sqrt(2 / (9 * c))
        ref = np.array([[[np.sum(d[:, y:y + 3, x:x + 3] * w[o]) for x in range(t)]
                         for y in range(t)] for o in range(m)])
        v = np.einsum('ij,cjk,lk->cil', bt, d, bt).astype(np.float32)
        u = np.einsum('ij,mcjk,lk->mcil', g, w, g).astype(np.float32)
        if fp16:
            v16, u16 = v.astype(np.float16), u.astype(np.float16)
            mm = np.zeros((m, p, p), np.float32)
            for k0 in range(0, c, chunk):
                acc = np.zeros((m, p, p), np.float16)
                for ci in range(k0, min(c, k0 + chunk)):
                    prod = u16[:, ci].astype(np.float32) * v16[ci].astype(np.float32)
                    acc = (acc.astype(np.float32) + prod).astype(np.float16)
                mm += acc.astype(np.float32)
        else:
            mm = np.einsum('mcij,cij->mij', u, v).astype(np.float32)
        y = np.einsum('ij,mjk,lk->mil', at, mm.astype(np.float64), at)
        errs.append(np.max(np.abs(y - ref)))
        mags.append(np.max(np.abs(ref)))
    return np.median(errs), np.max(errs), np.median(mags)


def main():
    rng = np.random.default_rng(0)
    print("| transform | products | median max error | worst | median output magnitude |")
    print("|---|---|---:|---:|---:|")
    for t in (2, 4):
        for fp16 in (False, True):
            med, worst, mag = errors(t, fp16, rng)
            print(f"| F({t}x{t}, 3x3) | {'binary16' if fp16 else 'f32'} | {med:.2e} | {worst:.2e} | {mag:.2f} |")


if __name__ == "__main__":
    main()
