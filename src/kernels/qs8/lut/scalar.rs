//! `lut_u8_scalar`: the reference.

/// See [`super::LutUkernel`].
///
/// # Safety
/// `row` must be valid for `len` bytes.
pub unsafe fn lut_u8_scalar(table: &[u8; 256], row: *mut u8, len: usize) {
    for v in std::slice::from_raw_parts_mut(row, len) {
        *v = table[*v as usize];
    }
}
