//! Every LUT kernel the host runs against the scalar reference, odd lengths and offsets
//! included.

use super::*;
use crate::kernels::qs8::tests::Rng;

#[test]
fn every_kernel_matches_the_reference() {
    let mut rng = Rng(11);
    let mut ran = vec![];
    for k in registry() {
        if !k.supported() {
            eprintln!("skipping {} (host lacks it)", k.name);
            continue;
        }
        ran.push(k.name);
        for len in [0, 1, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 127, 200, 1000] {
            for off in [0, 3] {
                let table: Vec<u8> = rng.bytes(256);
                let buf = rng.bytes(len + off + 8);
                let (mut got, mut want) = (buf.clone(), buf.clone());
                unsafe {
                    k.apply(&table, got.as_mut_ptr().add(off), len);
                    lut_u8_scalar(
                        table.as_slice().try_into().unwrap(),
                        want.as_mut_ptr().add(off),
                        len,
                    );
                }
                // every byte value is looked up somewhere, and nothing past `len` changes
                assert_eq!(got, want, "{} len {len} off {off}", k.name);
            }
        }
        // all 256 indices
        let table: Vec<u8> = (0..=255u8).map(|v| v.wrapping_mul(7) ^ 0x5a).collect();
        let mut all: Vec<u8> = (0..=255u8).collect();
        unsafe { k.apply(&table, all.as_mut_ptr(), 256) };
        assert_eq!(all, table, "{}", k.name);
    }
    assert!(ran.contains(&"lut_u8_scalar"));
}

#[test]
fn select_respects_the_level() {
    assert_eq!(select(Level::Scalar).name, "lut_u8_scalar");
    for k in registry() {
        let s = select(k.level);
        assert!(s.level <= k.level);
    }
}
