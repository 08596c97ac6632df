//! `lut_u8_16_neon`: 16 bytes per step. `TBL` over four registers covers 64 table bytes
//! (indices past them give 0); three `TBX` (which leave lanes past their 64 bytes alone) add
//! the other quarters, with the index lowered by 64 each time (wrapping, so lower indices
//! fall out of range).

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
    let mut i = 0;
    while i + 16 <= len {
        let v = vld1q_u8(row.add(i));
        let mut r = vqtbl4q_u8(t0, v);
        let v = vsubq_u8(v, step);
        r = vqtbx4q_u8(r, t1, v);
        let v = vsubq_u8(v, step);
        r = vqtbx4q_u8(r, t2, v);
        let v = vsubq_u8(v, step);
        r = vqtbx4q_u8(r, t3, v);
        vst1q_u8(row.add(i), r);
        i += 16;
    }
    super::lut_u8_scalar(table, row.add(i), len - i);
}
