//! `lut_u8_16_neon`: 16 bytes per step (two steps per loop iteration). `TBL` over four registers covers 64 table bytes
//! (indices past them give 0); three `TBX` (which leave lanes past their 64 bytes alone) add
//! the other quarters, with the index lowered by 64 each time (wrapping, so lower indices
//! fall out of range). A ragged end (at least 16 bytes in all) re-reads the last 16 and
//! blends in only the lanes not yet looked up.

use std::arch::aarch64::*;

/// See [`super::LutUkernel`].
///
/// # Safety
/// `row` must be valid for `len` bytes.
#[target_feature(enable = "neon")]
pub unsafe fn lut_u8_16_neon(table: &[u8; 256], row: *mut u8, len: usize) {
    let p = table.as_ptr();
    let q = |i: usize| {
        uint8x16x4_t(
            vld1q_u8(p.add(64 * i)),
            vld1q_u8(p.add(64 * i + 16)),
            vld1q_u8(p.add(64 * i + 32)),
            vld1q_u8(p.add(64 * i + 48)),
        )
    };
    let (t0, t1, t2, t3) = (q(0), q(1), q(2), q(3));
    let step = vdupq_n_u8(64);
    let look = |v: uint8x16_t| {
        let mut r = vqtbl4q_u8(t0, v);
        let v = vsubq_u8(v, step);
        r = vqtbx4q_u8(r, t1, v);
        let v = vsubq_u8(v, step);
        r = vqtbx4q_u8(r, t2, v);
        let v = vsubq_u8(v, step);
        vqtbx4q_u8(r, t3, v)
    };
    // 32 bytes a loop step (the loop's own add, compare and branch were a quarter of a
    // 16-byte step's instructions), then at most one step of 16
    for s in 0..len / 32 {
        let at = row.add(32 * s);
        let (a, b) = (vld1q_u8(at), vld1q_u8(at.add(16)));
        vst1q_u8(at, look(a));
        vst1q_u8(at.add(16), look(b));
    }
    let mut i = len / 32 * 32;
    if i + 16 <= len {
        vst1q_u8(row.add(i), look(vld1q_u8(row.add(i))));
        i += 16;
    }
    if i < len && len >= 16 {
        // The last 16 bytes again, keeping the lanes already looked up (in place, so they
        // must not go through the table twice).
        let at = len - 16;
        let v = vld1q_u8(row.add(at));
        const LANES: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
        let fresh = vcgeq_u8(vld1q_u8(LANES.as_ptr()), vdupq_n_u8((i - at) as u8));
        vst1q_u8(row.add(at), vbslq_u8(fresh, look(v), v));
    } else {
        super::lut_u8_scalar(table, row.add(i), len - i);
    }
}
