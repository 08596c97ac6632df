//! The tiled convolution ([`super::tiled`]) with fp16 arithmetic, for aarch64 cores that have
//! it (FEAT_FP16: Cortex-A76 / Raspberry Pi 5, Cortex-A78AE / Jetson Orin), opt-in
//! (`EngineOptions::fp16`, `--fp16`), as ncnn does by default on those cores.
//!
//! Tensors stay f32: a tile's packed im2col panel is rounded to binary16 (`FCVTN`), multiplied
//! by binary16 weights with `FMLA .8h` (8 multiply-adds per instruction against 4 for f32),
//! and each accumulator is widened and added into f32 every [`KCHUNK`] steps of `k`, so a
//! rounding error in binary16 comes from a sum of at most 64 products, not the whole `k`
//! (288 for a 3x3 conv over 32 channels). The epilogue (bias, activation) is the f32 one.
//!
//! What binary16 cannot hold is the caller's risk, as in ncnn's fp16 mode: a partial sum of 64
//! products beyond 65504 becomes infinity.
//!
//! Microkernel `gemm_f16_8x32_neonfp16`, tested against the portable `gemm_f16_8x32_scalar`
//! (which emulates each binary16 fused multiply-add) bit for bit; the conversion
//! `panel_to_f16_neon` against `half`'s.

use super::tiled::{pack_weights, MR, NR};

/// Steps of `k` summed in binary16 before the sum is added into f32.
#[cfg_attr(not(any(test, target_arch = "aarch64")), allow(dead_code))]
pub(crate) const KCHUNK: usize = 64;

/// Whether this host has fp16 arithmetic (and so runs [`super::tiled::TiledWeights::F16`]).
pub(crate) fn supported() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("fp16")
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        false
    }
}

/// Weights `[m][k]` packed as [`pack_weights`] does, rounded to binary16 (bits).
pub(crate) fn pack_weights_f16(w: &[f32], m: usize, k: usize) -> Vec<u16> {
    pack_weights(w, m, k)
        .into_iter()
        .map(|v| half::f16::from_f32(v).to_bits())
        .collect()
}

/// Portable [`panel_to_f16_neon`]: the rows of [`NR`] floats at `src[rows[r]..]` to binary16
/// (round to nearest even) in `dst[r][NR]`.
#[cfg_attr(all(not(test), target_arch = "aarch64"), allow(dead_code))]
pub(crate) fn panel_to_f16(src: &[f32], rows: &[usize], dst: &mut [u16]) {
    for (d, &o) in dst.chunks_exact_mut(NR).zip(rows) {
        for (d, &s) in d.iter_mut().zip(&src[o..o + NR]) {
            *d = half::f16::from_f32(s).to_bits();
        }
    }
}

/// Portable microkernel, the reference the NEON one is tested against: binary16 weights `w`
/// (`[kc][MR]`) times the binary16 panel (`[kc][NR]`), each multiply-add rounded once to
/// binary16 as `FMLA` does, the binary16 sums added into f32 every [`KCHUNK`] steps.
#[cfg(test)]
pub(crate) fn gemm_f16_8x32_scalar(kc: usize, w: &[u16], panel: &[u16], acc: &mut [[f32; NR]; MR]) {
    use half::f16;
    assert!(w.len() >= kc * MR && panel.len() >= kc * NR);
    *acc = [[0.0; NR]; MR];
    for k0 in (0..kc).step_by(KCHUNK) {
        let mut a = [[f16::ZERO; NR]; MR];
        for kk in k0..kc.min(k0 + KCHUNK) {
            for (r, ar) in a.iter_mut().enumerate() {
                let wr = f16::from_bits(w[kk * MR + r]).to_f64();
                for (j, v) in ar.iter_mut().enumerate() {
                    let p = f16::from_bits(panel[kk * NR + j]).to_f64();
                    // exact in f64 (11-bit significands), then one rounding to binary16
                    *v = f16::from_f64(v.to_f64() + wr * p);
                }
            }
        }
        for (dst, ar) in acc.iter_mut().zip(&a) {
            for (d, v) in dst.iter_mut().zip(ar) {
                *d += v.to_f32();
            }
        }
    }
}

/// [`panel_to_f16`] in NEON (`FCVTN`, round to nearest even as the FPCR is on Linux).
///
/// # Safety
/// `src` readable at `rows[r] + j` for each row `r`, `j < NR`; `dst.len() >= rows.len() * NR`.
#[cfg(target_arch = "aarch64")]
pub(crate) unsafe fn panel_to_f16_neon(src: *const f32, rows: &[usize], dst: &mut [u16]) {
    use std::arch::asm;
    assert!(dst.len() >= rows.len() * NR);
    if rows.is_empty() {
        return;
    }
    asm!(
        "2:",
        "ldr {o}, [{r}], #8",
        "add {o}, {s}, {o}, lsl #2",
        "ld1 {{v0.4s, v1.4s, v2.4s, v3.4s}}, [{o}], #64",
        "ld1 {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{o}]",
        "fcvtn v16.4h, v0.4s",
        "fcvtn2 v16.8h, v1.4s",
        "fcvtn v17.4h, v2.4s",
        "fcvtn2 v17.8h, v3.4s",
        "fcvtn v18.4h, v4.4s",
        "fcvtn2 v18.8h, v5.4s",
        "fcvtn v19.4h, v6.4s",
        "fcvtn2 v19.8h, v7.4s",
        "st1 {{v16.8h, v17.8h, v18.8h, v19.8h}}, [{d}], #64",
        "subs {n}, {n}, #1",
        "b.ne 2b",
        s = in(reg) src,
        r = inout(reg) rows.as_ptr() => _,
        o = out(reg) _,
        d = inout(reg) dst.as_mut_ptr() => _,
        n = inout(reg) rows.len() => _,
        out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _,
        out("v6") _, out("v7") _, out("v16") _, out("v17") _, out("v18") _, out("v19") _,
        options(nostack),
    );
}

/// One `k` of [`gemm_f16_8x32_neonfp16`] as assembly text: the 16 panel values in `v$x0` /
/// `v$x1` times each of the 8 weights in `v$w` (by element), into accumulators `v16`-`v31`
/// (row `r`: `v(16+2r)` pixels 0-7, `v(17+2r)` pixels 8-15). Registers are numbers so the
/// text is a literal.
#[cfg(target_arch = "aarch64")]
#[rustfmt::skip]
macro_rules! fmla_k_f16 {
    ($x0:literal, $x1:literal, $w:literal) => {
        concat!(
            "fmla v16.8h, v", $x0, ".8h, v", $w, ".h[0]\n",
            "fmla v17.8h, v", $x1, ".8h, v", $w, ".h[0]\n",
            "fmla v18.8h, v", $x0, ".8h, v", $w, ".h[1]\n",
            "fmla v19.8h, v", $x1, ".8h, v", $w, ".h[1]\n",
            "fmla v20.8h, v", $x0, ".8h, v", $w, ".h[2]\n",
            "fmla v21.8h, v", $x1, ".8h, v", $w, ".h[2]\n",
            "fmla v22.8h, v", $x0, ".8h, v", $w, ".h[3]\n",
            "fmla v23.8h, v", $x1, ".8h, v", $w, ".h[3]\n",
            "fmla v24.8h, v", $x0, ".8h, v", $w, ".h[4]\n",
            "fmla v25.8h, v", $x1, ".8h, v", $w, ".h[4]\n",
            "fmla v26.8h, v", $x0, ".8h, v", $w, ".h[5]\n",
            "fmla v27.8h, v", $x1, ".8h, v", $w, ".h[5]\n",
            "fmla v28.8h, v", $x0, ".8h, v", $w, ".h[6]\n",
            "fmla v29.8h, v", $x1, ".8h, v", $w, ".h[6]\n",
            "fmla v30.8h, v", $x0, ".8h, v", $w, ".h[7]\n",
            "fmla v31.8h, v", $x1, ".8h, v", $w, ".h[7]\n",
        )
    };
}

/// Accumulator row `v$lo`/`v$hi` widened to f32 in `v6`-`v9`.
#[cfg(target_arch = "aarch64")]
#[rustfmt::skip]
macro_rules! widen_row_f16 {
    ($lo:literal, $hi:literal) => {
        concat!(
            "fcvtl v6.4s, v", $lo, ".4h\n", "fcvtl2 v7.4s, v", $lo, ".8h\n",
            "fcvtl v8.4s, v", $hi, ".4h\n", "fcvtl2 v9.4s, v", $hi, ".8h\n",
        )
    };
}

/// Accumulator row `v$lo`/`v$hi` widened and stored to `[{a}]` (the first chunk), `a` to the
/// next row.
#[cfg(target_arch = "aarch64")]
#[rustfmt::skip]
macro_rules! store_row_f16 {
    ($lo:literal, $hi:literal) => {
        concat!(
            widen_row_f16!($lo, $hi),
            "st1 {{v6.4s, v7.4s, v8.4s, v9.4s}}, [{a}], {ab}\n",
        )
    };
}

/// Accumulator row `v$lo`/`v$hi` widened and added into `[{a}]` (later chunks), `a` to the
/// next row.
#[cfg(target_arch = "aarch64")]
#[rustfmt::skip]
macro_rules! add_row_f16 {
    ($lo:literal, $hi:literal) => {
        concat!(
            widen_row_f16!($lo, $hi),
            "ld1 {{v10.4s, v11.4s, v12.4s, v13.4s}}, [{a}]\n",
            "fadd v10.4s, v10.4s, v6.4s\n", "fadd v11.4s, v11.4s, v7.4s\n",
            "fadd v12.4s, v12.4s, v8.4s\n", "fadd v13.4s, v13.4s, v9.4s\n",
            "st1 {{v10.4s, v11.4s, v12.4s, v13.4s}}, [{a}], {ab}\n",
        )
    };
}

/// Two `k` of [`gemm_f16_8x32_neonfp16`]: each `k`'s 16 panel values in one `LD1`, both
/// `k`'s 8 weights in one more, then 32 `FMLA`s.
#[cfg(target_arch = "aarch64")]
macro_rules! pair_f16 {
    () => {
        concat!(
            "ld1 {{v0.8h, v1.8h}}, [{p}], {pb}\n",
            "ld1 {{v3.8h, v4.8h}}, [{p}], {pb}\n",
            "ld1 {{v5.8h, v6.8h}}, [{w}], #32\n",
            fmla_k_f16!(0, 1, 5),
            fmla_k_f16!(3, 4, 6),
        )
    };
}

/// NEON fp16 microkernel, inline assembly (Rust's binary16 vector types are not stable): two
/// 8-row x 16-pixel passes, 16 `.8h` accumulators (`v16`-`v31`); per `k` one `LD1` of 16
/// panel values feeds 16 `FMLA` by element (the element register must be `v0`-`v15` for
/// `.h`), the weights of two `k` come in one `LD1`, four `k` per loop step, then a pair and a
/// single `k` by the bits of the count. After each [`KCHUNK`] steps the accumulators are
/// widened (`FCVTL`) and stored (first chunk) or added into `acc`.
///
/// # Safety
/// The CPU has FEAT_FP16 ([`supported`]); `panel` readable at `k * NR + j` for `k < kc`,
/// `j < NR`; `w.len() >= kc * MR`.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "fp16")]
pub(crate) unsafe fn gemm_f16_8x32_neonfp16(
    kc: usize,
    w: &[u16],
    panel: *const u16,
    acc: &mut [[f32; NR]; MR],
) {
    use std::arch::asm;
    assert!(w.len() >= kc * MR, "packed weights too short");
    if kc == 0 {
        *acc = [[0.0; NR]; MR];
        return;
    }
    for jc in 0..NR / 16 {
        let mut k0 = 0;
        while k0 < kc {
            let n = KCHUNK.min(kc - k0);
            asm!(
                "movi v16.2d, #0", "movi v17.2d, #0", "movi v18.2d, #0", "movi v19.2d, #0",
                "movi v20.2d, #0", "movi v21.2d, #0", "movi v22.2d, #0", "movi v23.2d, #0",
                "movi v24.2d, #0", "movi v25.2d, #0", "movi v26.2d, #0", "movi v27.2d, #0",
                "movi v28.2d, #0", "movi v29.2d, #0", "movi v30.2d, #0", "movi v31.2d, #0",
                "lsr {pairs}, {n}, #2",
                "cbz {pairs}, 3f",
                "2:",
                pair_f16!(),
                pair_f16!(),
                "subs {pairs}, {pairs}, #1",
                "b.ne 2b",
                "3:",
                "tbz {n}, #1, 7f",
                pair_f16!(),
                "7:",
                "tbz {n}, #0, 4f",
                "ld1 {{v0.8h, v1.8h}}, [{p}]",
                "ld1 {{v2.8h}}, [{w}]",
                fmla_k_f16!(0, 1, 2),
                "4:",
                // the first chunk stores the widened rows, later ones add into them
                "cbz {first}, 5f",
                store_row_f16!(16, 17), store_row_f16!(18, 19),
                store_row_f16!(20, 21), store_row_f16!(22, 23),
                store_row_f16!(24, 25), store_row_f16!(26, 27),
                store_row_f16!(28, 29), store_row_f16!(30, 31),
                "b 6f",
                "5:",
                add_row_f16!(16, 17), add_row_f16!(18, 19),
                add_row_f16!(20, 21), add_row_f16!(22, 23),
                add_row_f16!(24, 25), add_row_f16!(26, 27),
                add_row_f16!(28, 29), add_row_f16!(30, 31),
                "6:",
                p = inout(reg) panel.add(k0 * NR + jc * 16) => _,
                w = inout(reg) w.as_ptr().add(k0 * MR) => _,
                n = in(reg) n,
                pairs = out(reg) _,
                first = in(reg) usize::from(k0 == 0),
                a = inout(reg) (acc.as_mut_ptr() as *mut f32).add(jc * 16) => _,
                ab = in(reg) NR * 4,
                // bytes between panel rows
                pb = in(reg) NR * 2,
                out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _,
                out("v6") _, out("v7") _, out("v8") _, out("v9") _, out("v10") _, out("v11") _,
                out("v12") _, out("v13") _,
                out("v16") _, out("v17") _, out("v18") _, out("v19") _, out("v20") _, out("v21") _,
                out("v22") _, out("v23") _, out("v24") _, out("v25") _, out("v26") _, out("v27") _,
                out("v28") _, out("v29") _, out("v30") _, out("v31") _,
                options(nostack),
            );
            k0 += n;
        }
    }
}

/// The f32 rows at `src[rows[r]..]` ([`NR`] floats each) to binary16 in `dst[r][NR]`.
pub(crate) fn to_f16(src: &[f32], rows: &[usize], dst: &mut [u16]) {
    assert!(rows.iter().all(|&o| o + NR <= src.len()) && dst.len() >= rows.len() * NR);
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the rows are in bounds and dst holds them (asserted).
    unsafe {
        panel_to_f16_neon(src.as_ptr(), rows, dst)
    }
    #[cfg(not(target_arch = "aarch64"))]
    panel_to_f16(src, rows, dst)
}

/// The microkernel of this build.
///
/// # Safety
/// As [`gemm_f16_8x32_neonfp16`].
#[allow(unused_variables)]
pub(crate) unsafe fn microkernel(kc: usize, w: &[u16], panel: &[u16], acc: &mut [[f32; NR]; MR]) {
    assert!(panel.len() >= kc * NR);
    #[cfg(target_arch = "aarch64")]
    gemm_f16_8x32_neonfp16(kc, w, panel.as_ptr(), acc);
    #[cfg(not(target_arch = "aarch64"))]
    unreachable!("fp16 convolution is only planned on aarch64");
}
