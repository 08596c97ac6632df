//! Every depthwise kernel the host runs against the scalar reference, for 3x3, 5x5, 7x7 and
//! 11x11 at stride 1 and 2, odd sizes and channel counts.

use super::*;
use crate::kernels::qs8::gemm::EpiMode;
use crate::kernels::qs8::tests::Rng;

/// The reference kernel.
fn scalar() -> DwKernel {
    registry()
        .into_iter()
        .find(|k| k.level == Level::Scalar)
        .unwrap()
}

#[test]
fn every_dwconv_kernel_matches_the_reference() {
    let mut rng = Rng(99);
    let reference = scalar();
    for k in registry() {
        if !k.level.supported() {
            eprintln!("skipped {}: host lacks {:?}", k.name, k.level);
            continue;
        }
        for &(ks, dl) in &[(3, 1), (3, 2), (5, 1), (7, 1), (11, 1)] {
            // (rows, columns); every kernel on every geometry, whether it `suits` it or not
            for &s in &[[1, 1], [2, 2], [2, 1], [1, 2]] {
                for &(h, w, c) in &[
                    (1, 1, 1),
                    (9, 7, 17),
                    (13, 12, 16),
                    (6, 11, 40),
                    (5, 6, 131),
                    (4, 29, 24),
                    (3, 45, 16), // packed pixels: groups of 4 x 4, 1 x 4 and single pixels
                    (4, 37, 32),
                    (3, 9, 72),  // a block of 8 channels: two planes
                    (3, 150, 4), // 16 pixels a vector: groups of 4 x 16 at both strides
                    (4, 23, 8),  // 8 pixels a vector, single pixels at the right edge
                ] {
                    for &zx in &[0, 128, 255] {
                        for mode in [
                            EpiMode::Quant {
                                zp: 7,
                                lo: 0,
                                hi: 255,
                            },
                            EpiMode::Float,
                        ] {
                            let (p, span) = (ks / 2 * dl, (ks - 1) * dl + 1);
                            let (oh, ow) =
                                ((h + 2 * p - span) / s[0] + 1, (w + 2 * p - span) / s[1] + 1);
                            let g = DwGeom {
                                h,
                                w,
                                c,
                                oh,
                                ow,
                                k: [ks, ks],
                                s,
                                p: [p, p],
                                d: [dl, dl],
                            };
                            let x = rng.bytes(h * w * c + 64);
                            let wmin = if k.no_min_weight { -127 } else { -128 };
                            let mut wt: Vec<i8> = rng
                                .bytes(c * ks * ks)
                                .into_iter()
                                .map(|v| (v as i8).max(wmin))
                                .collect();
                            wt[0] = wmin;
                            *wt.last_mut().unwrap() = 127;
                            let packed = (k.pack)(&wt, &g);
                            let ref_packed = pack_weights(&wt, &g);
                            let cp = g.c_pad();
                            let bias: Vec<i32> =
                                (0..cp).map(|_| rng.next() as i32 % 3000).collect();
                            let scale: Vec<f32> = (0..cp)
                                .map(|_| 1e-3 + (rng.next() % 100) as f32 * 1e-4)
                                .collect();
                            let elem = if mode == EpiMode::Float { 4 } else { 1 };
                            let mut got = vec![0u8; oh * ow * c * elem];
                            let mut want = got.clone();
                            for oy in 0..oh {
                                let o = oy * ow * c * elem;
                                unsafe {
                                    (reference.run)(
                                        &g,
                                        oy,
                                        1,
                                        x.as_ptr(),
                                        zx,
                                        ref_packed.as_ptr(),
                                        bias.as_ptr(),
                                        scale.as_ptr(),
                                        mode,
                                        want.as_mut_ptr().add(o),
                                    );
                                }
                            }
                            // A kernel that reads the image reads a framed copy as well (the
                            // engine hands it one where the border is large); a signed one
                            // reads only its signed copy.
                            let inputs: &[Input] = match (k.input)(&g) {
                                Input::FramedSigned => &[Input::FramedSigned],
                                _ => &[Input::Image, Input::Framed],
                            };
                            for &input in inputs {
                                let mut xp = vec![0u8; framed_len(&g)];
                                let (gk, xk) = if input == Input::Image {
                                    (g, x.as_ptr())
                                } else {
                                    let signed = input == Input::FramedSigned;
                                    let gp =
                                        frame_input(&g, &x[..h * w * c], zx as u8, signed, &mut xp);
                                    assert_eq!(gp.p, [0, 0]);
                                    (gp, xp.as_ptr())
                                };
                                // the engine's bands, single rows and all rows in one call
                                let mut sizes = vec![(k.band)(&gk), 1, oh];
                                sizes.sort();
                                sizes.dedup();
                                for rows in sizes {
                                    got.fill(0);
                                    for oy in (0..oh).step_by(rows) {
                                        let o = oy * ow * c * elem;
                                        unsafe {
                                            (k.run)(
                                                &gk,
                                                oy,
                                                rows.min(oh - oy),
                                                xk,
                                                zx,
                                                packed.as_ptr(),
                                                bias.as_ptr(),
                                                scale.as_ptr(),
                                                mode,
                                                got.as_mut_ptr().add(o),
                                            );
                                        }
                                    }
                                    assert_eq!(
                                        got, want,
                                        "{} {input:?} k{ks} d{dl} s{s:?} {h}x{w}x{c} zx {zx} \
                                         {mode:?} rows {rows}",
                                        k.name
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_framed_copy_gives_the_same_rows() {
    // The engine's path for framed kernels, checked with the reference on every host:
    // a zx-framed copy without padding computes what the padded geometry computes.
    let mut rng = Rng(7);
    let reference = scalar();
    for &(ks, s, dl, h, w, c, p) in &[
        (3, 1, 1, 7, 9, 17, [1, 1]),
        (3, 2, 1, 8, 8, 16, [1, 1]),
        (5, 2, 1, 9, 6, 5, [2, 2]),
        (3, 1, 2, 6, 5, 3, [2, 2]),
        (3, 2, 1, 5, 7, 4, [0, 1]), // pad on one axis only
        (5, 1, 1, 1, 1, 2, [2, 2]),
    ] {
        let span = (ks - 1) * dl + 1;
        let (oh, ow) = ((h + 2 * p[0] - span) / s + 1, (w + 2 * p[1] - span) / s + 1);
        let g = DwGeom {
            h,
            w,
            c,
            oh,
            ow,
            k: [ks, ks],
            s: [s, s],
            p,
            d: [dl, dl],
        };
        let zx = 131;
        let x = rng.bytes(h * w * c + 64);
        let wt: Vec<i8> = rng
            .bytes(c * ks * ks)
            .into_iter()
            .map(|v| v as i8)
            .collect();
        let packed = pack_weights(&wt, &g);
        let cp = g.c_pad();
        let bias: Vec<i32> = (0..cp).map(|_| rng.next() as i32 % 3000).collect();
        let scale = vec![0.01f32; cp];
        let mode = EpiMode::Quant {
            zp: 3,
            lo: 0,
            hi: 255,
        };
        let mut xp = vec![0u8; framed_len(&g)];
        let gp = frame_input(&g, &x[..h * w * c], zx as u8, false, &mut xp);
        // the signed copy is the same bytes XOR 0x80
        let mut xs = vec![0u8; framed_len(&g)];
        assert_eq!(
            frame_input(&g, &x[..h * w * c], zx as u8, true, &mut xs),
            gp
        );
        assert!(xs.iter().zip(&xp).all(|(s, p)| s ^ 0x80 == *p));
        let (mut got, mut want) = (vec![0u8; oh * ow * c], vec![0u8; oh * ow * c]);
        for oy in 0..oh {
            let o = oy * ow * c;
            unsafe {
                let common = (packed.as_ptr(), bias.as_ptr(), scale.as_ptr());
                (reference.run)(
                    &g,
                    oy,
                    1,
                    x.as_ptr(),
                    zx,
                    common.0,
                    common.1,
                    common.2,
                    mode,
                    want.as_mut_ptr().add(o),
                );
                (reference.run)(
                    &gp,
                    oy,
                    1,
                    xp.as_ptr(),
                    zx,
                    common.0,
                    common.1,
                    common.2,
                    mode,
                    got.as_mut_ptr().add(o),
                );
            }
        }
        assert_eq!(got, want, "k{ks} s{s} d{dl} {h}x{w}x{c} p{p:?}");
        // the frame is zx, the image sits at (p0, p1)
        assert_eq!(xp[0], if p[0] + p[1] > 0 { zx as u8 } else { x[0] });
    }
}

#[test]
fn selection_follows_the_geometry() {
    // every geometry gets a kernel that suits it; on AVX-512 VNNI hosts the row-interleaved
    // kernel at column stride 1 and the tap-major one otherwise, on aarch64 with the dot
    // product the row-interleaved one at column stride 1
    for s in [[1, 1], [2, 2], [2, 1], [1, 2]] {
        let g = DwGeom {
            h: 16,
            w: 16,
            c: 64,
            oh: 16 / s[0],
            ow: 16 / s[1],
            k: [3, 3],
            s,
            p: [1, 1],
            d: [1, 1],
        };
        let level = Level::from_isa(crate::kernels::isa());
        let k = select_for(level, &g, true);
        assert!((k.suits)(&g), "{} for {s:?}", k.name);
        #[cfg(target_arch = "x86_64")]
        if Level::Avx512Vnni.supported() && level >= Level::Avx512Vnni {
            let want = if s[1] == 1 {
                "dwconv_qs8_kxk_64c_rows4_avx512vnni"
            } else {
                "dwconv_qs8_kxk_64c_avx512vnni"
            };
            assert_eq!(k.name, want, "{s:?}");
        }
        // with the dot product, the row-interleaved kernel at column stride 1
        #[cfg(target_arch = "aarch64")]
        if Level::NeonDot.supported() && level >= Level::NeonDot {
            assert_eq!(
                k.name == "dwconv_qs8_kxk_16c_rows4_neondot",
                s[1] == 1,
                "{} for {s:?}",
                k.name
            );
        }
    }
}
