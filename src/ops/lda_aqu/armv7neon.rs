//! LDA-AQU's corners, keys and values on 32-bit Arm NEON, inline assembly (Rust's 32-bit Arm NEON
//! intrinsics are not stable; LLVM does not vectorise f32 arithmetic for armv7 NEON, so the
//! portable loops ran scalar VFP there).
//!
//! One assembly loop per output pixel and offset group walks the 9 (any number of) taps with
//! the pixel's channels in registers: four corner indices, four bilinear weights, the four
//! corner rows, GridSample's bilinear terms in the portable order, then for keys the bias, the
//! query product and the sum over the channels (in order, VFP adds on the NEON register's
//! single-precision views) and for values the attention-weighted sum over the taps, which
//! never leaves registers. `VMLA.F32` on armv7 rounds the product before adding (it is not
//! fused), so each step is the portable `a * b + c`.
//!
//! NEON flushes subnormal operands and results to zero where the portable VFP code keeps
//! them; otherwise the results are identical (the module's tests compare them).
//!
//! Covered: the float op (no int8 roundings), key width 4 and value width 16 (the shipped
//! models' `ck` and `cv`), each offset group's channels inside one head. Anything else
//! returns `false` and runs the portable code.

use super::{Dims, Inputs, LdaAqu, Scratch, BLOCK};
use std::arch::asm;

/// Bytes between the scratch arrays' rows (`[..][BLOCK]` of 4-byte values); the assembly's
/// immediate offsets (`#256`, `#512`, `#768`, `#1024`) assume it.
const ROW: usize = BLOCK * 4;
const _: () = assert!(ROW == 256);

/// Whether the fused op's float form with these widths is covered here.
fn covered(a: &LdaAqu, sc: &Scratch) -> bool {
    let rounds = [
        &a.round_keys,
        &a.round_biased,
        &a.round_qk,
        &a.round_logits,
        &a.round_attn,
        &a.round_values,
        &a.round_weighted,
    ];
    rounds.iter().all(|r| r.is_empty())
        && sc.key_segs.iter().all(|s| s.len() == 1)
        && sc.val_segs.iter().all(|s| s.len() == 1)
}

/// Step 2 (`super::logits`) for key width 4: `attn[head][tap][pixel] += sum_c q[c] *
/// (sample(c) + bias[c])`, channels in order. Returns false, having done nothing, where the
/// op is not covered.
///
/// # Safety
/// As `super::logits`; the CPU has NEON.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn logits(
    a: &LdaAqu,
    d: &Dims,
    sc: &mut Scratch,
    ins: &Inputs,
    bi: usize,
    p0: usize,
    len: usize,
) -> bool {
    const CK: usize = 4;
    if d.ck != CK || !covered(a, sc) {
        return false;
    }
    let (n, g) = (a.taps, d.g);
    let plane_out = d.ho * d.wo;
    let kc = g * CK;
    let rows = (d.hw + 1) * CK;
    let Scratch {
        idx,
        wts,
        attn,
        key_segs,
        ..
    } = sc;
    attn.fill(0.0);
    for (gi, segs) in key_segs.iter().enumerate() {
        let img = ins.kt[(bi * g + gi) * rows..][..rows].as_ptr();
        let head = segs[0].head;
        let bias = ins.bias_t[gi * n * CK..][..n * CK].as_ptr();
        for i in 0..len {
            let qa = (bi * kc + gi * CK) * plane_out + p0 + i;
            let query: [f32; CK] = std::array::from_fn(|c| ins.q[qa + c * plane_out]);
            asm!(
                ".fpu neon",
                "vld1.32 {{d16-d17}}, [{r0}]",
                "1:",
                "ldr {r0}, [{idxp}]",
                "ldr {r1}, [{idxp}, #256]",
                "vldr s28, [{wp}]",
                "vldr s29, [{wp}, #256]",
                "vldr s30, [{wp}, #512]",
                "vldr s31, [{wp}, #768]",
                "add {wp}, {wp}, #1024",
                "add {r0}, {img}, {r0}, lsl #4",
                "add {r1}, {img}, {r1}, lsl #4",
                "vld1.32 {{d0-d1}}, [{r0}]",
                "vld1.32 {{d2-d3}}, [{r1}]",
                "ldr {r0}, [{idxp}, #512]",
                "ldr {r1}, [{idxp}, #768]",
                "add {idxp}, {idxp}, #1024",
                "add {r0}, {img}, {r0}, lsl #4",
                "add {r1}, {img}, {r1}, lsl #4",
                "vld1.32 {{d4-d5}}, [{r0}]",
                "vld1.32 {{d6-d7}}, [{r1}]",
                // dy2 * (dx2 * r0 + dx1 * r1) + dy1 * (dx2 * r2 + dx1 * r3)
                "vmul.f32 q4, q0, d14[0]",
                "vmla.f32 q4, q1, d14[1]",
                "vmul.f32 q5, q2, d14[0]",
                "vmla.f32 q5, q3, d14[1]",
                "vmul.f32 q4, q4, d15[0]",
                "vmla.f32 q4, q5, d15[1]",
                // (key + bias) * query, then the sum over the channels in order
                "vld1.32 {{d10-d11}}, [{bp}]!",
                "vadd.f32 q4, q4, q5",
                "vmul.f32 q4, q4, q8",
                "vldr s0, [{ap}]",
                "vadd.f32 s0, s0, s16",
                "vadd.f32 s0, s0, s17",
                "vadd.f32 s0, s0, s18",
                "vadd.f32 s0, s0, s19",
                "vstr s0, [{ap}]",
                "add {ap}, {ap}, #256",
                "subs {cnt}, {cnt}, #1",
                "bne 1b",
                img = in(reg) img,
                idxp = inout(reg) idx.as_ptr().add(gi * n * 4 * BLOCK + i) => _,
                wp = inout(reg) wts.as_ptr().add(gi * n * 4 * BLOCK + i) => _,
                ap = inout(reg) attn.as_mut_ptr().add(head * n * BLOCK + i) => _,
                bp = inout(reg) bias => _,
                cnt = inout(reg) n => _,
                r0 = inout(reg) query.as_ptr() => _,
                r1 = out(reg) _,
                out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
                out("d6") _, out("d7") _, out("d8") _, out("d9") _, out("d10") _,
                out("d11") _, out("d14") _, out("d15") _, out("d16") _, out("d17") _,
                options(nostack),
            );
        }
    }
    true
}

/// The value loop's half step: 8 channels of the four corner rows `{r0}-{r3}` (post-incremented
/// when `$wb` is `"!"`), GridSample's bilinear terms with the weights in `d14`/`d15`, times
/// the attention in `d13[0]`, added to the accumulators `$lo`/`$hi`.
macro_rules! values_8_channels {
    ($wb:literal, $lo:literal, $hi:literal) => {
        concat!(
            "vld1.32 {{d0-d3}}, [{r0}]",
            $wb,
            "\n",
            "vld1.32 {{d4-d7}}, [{r1}]",
            $wb,
            "\n",
            "vld1.32 {{d16-d19}}, [{r2}]",
            $wb,
            "\n",
            "vld1.32 {{d20-d23}}, [{r3}]",
            $wb,
            "\n",
            "vmul.f32 q4, q0, d14[0]\n",
            "vmla.f32 q4, q2, d14[1]\n",
            "vmul.f32 q5, q1, d14[0]\n",
            "vmla.f32 q5, q3, d14[1]\n",
            "vmul.f32 q0, q8, d14[0]\n",
            "vmla.f32 q0, q10, d14[1]\n",
            "vmul.f32 q1, q9, d14[0]\n",
            "vmla.f32 q1, q11, d14[1]\n",
            "vmul.f32 q4, q4, d15[0]\n",
            "vmla.f32 q4, q0, d15[1]\n",
            "vmul.f32 q5, q5, d15[0]\n",
            "vmla.f32 q5, q1, d15[1]\n",
            "vmla.f32 ",
            $lo,
            ", q4, d13[0]\n",
            "vmla.f32 ",
            $hi,
            ", q5, d13[0]\n",
        )
    };
}

/// Step 4 (`super::values`) for value width 16: each pixel's attention-weighted sum of the
/// sampled values over the taps, into `sc.out[channel][pixel]`. Returns false, having done
/// nothing, where the op is not covered.
///
/// # Safety
/// As `super::values`; the CPU has NEON.
pub(super) unsafe fn values(
    a: &LdaAqu,
    d: &Dims,
    sc: &mut Scratch,
    ins: &Inputs,
    bi: usize,
    len: usize,
) -> bool {
    const CV: usize = 16;
    if d.cv != CV || !covered(a, sc) {
        return false;
    }
    let (n, g) = (a.taps, d.g);
    let rows = (d.hw + 1) * CV;
    let Scratch {
        idx,
        wts,
        attn,
        acc,
        out,
        val_segs,
        ..
    } = sc;
    for (gi, segs) in val_segs.iter().enumerate() {
        let img = ins.vt[(bi * g + gi) * rows..][..rows].as_ptr();
        let head = segs[0].head;
        let acc = &mut acc[..len * CV];
        for (i, px) in acc.chunks_exact_mut(CV).enumerate() {
            asm!(
                ".fpu neon",
                "vmov.i32 q12, #0",
                "vmov.i32 q13, #0",
                "vmov.i32 q14, #0",
                "vmov.i32 q15, #0",
                "1:",
                "ldr {r0}, [{idxp}]",
                "ldr {r1}, [{idxp}, #256]",
                "ldr {r2}, [{idxp}, #512]",
                "ldr {r3}, [{idxp}, #768]",
                "add {idxp}, {idxp}, #1024",
                "vldr s28, [{wp}]",
                "vldr s29, [{wp}, #256]",
                "vldr s30, [{wp}, #512]",
                "vldr s31, [{wp}, #768]",
                "add {wp}, {wp}, #1024",
                "vldr s26, [{ap}]",
                "add {ap}, {ap}, #256",
                "add {r0}, {img}, {r0}, lsl #6",
                "add {r1}, {img}, {r1}, lsl #6",
                "add {r2}, {img}, {r2}, lsl #6",
                "add {r3}, {img}, {r3}, lsl #6",
                // channels 0-7, then 8-15: the bilinear sample times the attention, added
                values_8_channels!("!", "q12", "q13"),
                values_8_channels!("", "q14", "q15"),
                "subs {cnt}, {cnt}, #1",
                "bne 1b",
                "vst1.32 {{d24-d27}}, [{px}]!",
                "vst1.32 {{d28-d31}}, [{px}]",
                img = in(reg) img,
                idxp = inout(reg) idx.as_ptr().add(gi * n * 4 * BLOCK + i) => _,
                wp = inout(reg) wts.as_ptr().add(gi * n * 4 * BLOCK + i) => _,
                ap = inout(reg) attn.as_ptr().add(head * n * BLOCK + i) => _,
                cnt = inout(reg) n => _,
                px = inout(reg) px.as_mut_ptr() => _,
                r0 = out(reg) _,
                r1 = out(reg) _,
                r2 = out(reg) _,
                r3 = out(reg) _,
                out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
                out("d6") _, out("d7") _, out("d8") _, out("d9") _, out("d10") _,
                out("d11") _, out("d13") _, out("d14") _, out("d15") _, out("d16") _,
                out("d17") _, out("d18") _, out("d19") _, out("d20") _, out("d21") _,
                out("d22") _, out("d23") _, out("d24") _, out("d25") _, out("d26") _,
                out("d27") _, out("d28") _, out("d29") _, out("d30") _, out("d31") _,
                options(nostack),
            );
        }
        for (i, px) in acc.chunks_exact(CV).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                *out.get_unchecked_mut((gi * CV + c) * BLOCK + i) = v;
            }
        }
    }
    true
}

/// The portable `corners` four grid points per step (`super::corners`: the same operations,
/// `/ 2` as the exact `* 0.5`; NEON's VMAX/VMIN give NaN for a NaN coordinate where Rust's
/// `max`/`min` give the bound, and VCVT makes it 0, but such a point's weights are zeroed and
/// its corners read the zero row either way). Corners in range are one unsigned compare per
/// axis (a negative index wraps to a large one). Any last 1-3 points take the portable code.
///
/// # Safety
/// The CPU has NEON; `idx` and `wts` hold `4 * BLOCK` entries from this group and tap.
pub(super) unsafe fn corners(
    align_corners: bool,
    h: usize,
    w: usize,
    gxy: &[f32],
    idx: &mut [u32],
    wts: &mut [f32],
) {
    let len = (gxy.len() / 2).min(BLOCK);
    let quads = len / 4;
    assert!(idx.len() >= 4 * BLOCK && wts.len() >= 4 * BLOCK);
    let (fw, fh) = (w as f32, h as f32);
    let (sx, sy) = if align_corners {
        (fw - 1.0, fh - 1.0)
    } else {
        (fw, fh)
    };
    // Constants, four lanes each, in the order the loop loads them.
    let f = |v: f32| [v.to_bits(); 4];
    let u = |v: u32| [v; 4];
    let consts: [[u32; 4]; 12] = [
        f(1.0),
        f(0.5),
        f(sx),
        f(sy),
        f(-4.0),
        f(fw + 4.0),
        f(fh + 4.0),
        f(f32::INFINITY),
        u(1),
        u(w as u32),
        u(h as u32),
        u((h * w) as u32),
    ];
    /// The loop, with the coordinate denormalisation `$denorm` (q0 = x, q1 = y; q8 = 1.0,
    /// q9 = 0.5, q10 / q11 = the axes' lengths).
    macro_rules! corners_loop {
        ($($denorm:literal),*) => {
            asm!(
                ".fpu neon",
                "1:",
                "vld2.32 {{d0-d3}}, [{gp}]!",
                "mov {c}, {cp}",
                "vld1.32 {{d16-d19}}, [{c}]!",
                "vld1.32 {{d20-d23}}, [{c}]!",
                $($denorm,)*
                // finite (|v| < inf; false for NaN), then the clamps
                "vld1.32 {{d16-d19}}, [{c}]!",
                "vld1.32 {{d20-d23}}, [{c}]!",
                "vabs.f32 q12, q0",
                "vabs.f32 q13, q1",
                "vcgt.f32 q12, q11, q12",
                "vcgt.f32 q13, q11, q13",
                "vand q15, q12, q13",
                "vmax.f32 q0, q0, q8",
                "vmin.f32 q0, q0, q9",
                "vmax.f32 q1, q1, q8",
                "vmin.f32 q1, q1, q10",
                // floor: truncate, minus one where that rounded up; q2 = x1, q3 = y1
                "vcvt.s32.f32 q2, q0",
                "vcvt.s32.f32 q3, q1",
                "vcvt.f32.s32 q4, q2",
                "vcvt.f32.s32 q5, q3",
                "vcgt.f32 q4, q4, q0",
                "vcgt.f32 q5, q5, q1",
                "vadd.i32 q2, q2, q4",
                "vadd.i32 q3, q3, q5",
                "vld1.32 {{d16-d17}}, [{c}]!",
                "vadd.i32 q4, q2, q8",
                "vadd.i32 q5, q3, q8",
                // weights dx2, dx1, dy2, dy1, zero where the point is not finite
                "vcvt.f32.s32 q6, q4",
                "vcvt.f32.s32 q7, q2",
                "vsub.f32 q6, q6, q0",
                "vsub.f32 q7, q0, q7",
                "vand q6, q6, q15",
                "vand q7, q7, q15",
                "mov {t}, {wp}",
                "vst1.32 {{d12-d13}}, [{t}], {rs}",
                "vst1.32 {{d14-d15}}, [{t}], {rs}",
                "vcvt.f32.s32 q6, q5",
                "vcvt.f32.s32 q7, q3",
                "vsub.f32 q6, q6, q1",
                "vsub.f32 q7, q1, q7",
                "vand q6, q6, q15",
                "vand q7, q7, q15",
                "vst1.32 {{d12-d13}}, [{t}], {rs}",
                "vst1.32 {{d14-d15}}, [{t}]",
                "add {wp}, {wp}, #16",
                // rows in range (q0 top, q1 bottom, with finite), columns (q6 left, q7 right)
                "vld1.32 {{d18-d21}}, [{c}]!",
                "vld1.32 {{d22-d23}}, [{c}]",
                "vcgt.u32 q0, q10, q3",
                "vcgt.u32 q1, q10, q5",
                "vand q0, q0, q15",
                "vand q1, q1, q15",
                "vcgt.u32 q6, q9, q2",
                "vcgt.u32 q7, q9, q4",
                // q2 = y1 * w + x1 (top-left), q3 = that + w (bottom-left)
                "vmla.i32 q2, q3, q9",
                "vadd.i32 q3, q2, q9",
                "vadd.i32 q4, q2, q8",
                "vadd.i32 q5, q3, q8",
                "vand q12, q0, q6",
                "vand q13, q0, q7",
                "vand q14, q1, q6",
                "vand q0, q1, q7",
                "vbsl q12, q2, q11",
                "vbsl q13, q4, q11",
                "vbsl q14, q3, q11",
                "vbsl q0, q5, q11",
                "mov {t}, {ip}",
                "vst1.32 {{d24-d25}}, [{t}], {rs}",
                "vst1.32 {{d26-d27}}, [{t}], {rs}",
                "vst1.32 {{d28-d29}}, [{t}], {rs}",
                "vst1.32 {{d0-d1}}, [{t}]",
                "add {ip}, {ip}, #16",
                "subs {cnt}, {cnt}, #1",
                "bne 1b",
                gp = inout(reg) gxy.as_ptr() => _,
                wp = inout(reg) wts.as_mut_ptr() => _,
                ip = inout(reg) idx.as_mut_ptr() => _,
                cp = in(reg) consts.as_ptr(),
                rs = in(reg) ROW,
                cnt = inout(reg) quads => _,
                c = out(reg) _,
                t = out(reg) _,
                out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
                out("d6") _, out("d7") _, out("d8") _, out("d9") _, out("d10") _,
                out("d11") _, out("d12") _, out("d13") _, out("d14") _, out("d15") _,
                out("d16") _, out("d17") _, out("d18") _, out("d19") _, out("d20") _,
                out("d21") _, out("d22") _, out("d23") _, out("d24") _, out("d25") _,
                out("d26") _, out("d27") _, out("d28") _, out("d29") _, out("d30") _,
                out("d31") _,
                options(nostack),
            )
        };
    }
    if quads > 0 {
        if align_corners {
            // ((n + 1) * 0.5) * (len - 1)
            corners_loop!(
                "vadd.f32 q0, q0, q8",
                "vadd.f32 q1, q1, q8",
                "vmul.f32 q0, q0, q9",
                "vmul.f32 q1, q1, q9",
                "vmul.f32 q0, q0, q10",
                "vmul.f32 q1, q1, q11"
            );
        } else {
            // ((n + 1) * len - 1) * 0.5
            corners_loop!(
                "vadd.f32 q0, q0, q8",
                "vadd.f32 q1, q1, q8",
                "vmul.f32 q0, q0, q10",
                "vmul.f32 q1, q1, q11",
                "vsub.f32 q0, q0, q8",
                "vsub.f32 q1, q1, q8",
                "vmul.f32 q0, q0, q9",
                "vmul.f32 q1, q1, q9"
            );
        }
    }
    super::corners_from(align_corners, h, w, gxy, idx, wts, 4 * quads);
}
