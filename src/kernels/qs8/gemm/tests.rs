//! Every GEMM kernel the host runs against the scalar reference (bit-exact), and the
//! reference against naive i32 arithmetic.

use super::*;
use crate::kernels::qs8::tests::Rng;

fn run_case(k: &GemmKernel, m: usize, n: usize, kk: usize, mode: EpiMode, rng: &mut Rng) {
    // Extreme weights at both ends; -127 rather than -128 for kernels that need it.
    let wmin = if k.no_min_weight { -127 } else { -128 };
    let lda = kk + (m % 3); // odd strides too
    let mut a = rng.bytes(m * lda + 64);
    // force extreme activations somewhere
    a[0] = 255;
    let mut w: Vec<i8> = rng
        .bytes(n * kk)
        .into_iter()
        .map(|v| (v as i8).max(wmin))
        .collect();
    *w.last_mut().unwrap() = 127;
    w[0] = wmin;
    let b = PackedB::new(&w, n, kk);
    assert_eq!(b.has_min, wmin == -128);
    let np = n.div_ceil(NR) * NR;
    let bias: Vec<i32> = (0..np).map(|_| rng.next() as i32 % 5000).collect();
    let scale: Vec<f32> = (0..np)
        .map(|_| 1e-4 + (rng.next() % 1000) as f32 * 1e-5)
        .collect();
    let epi = Epilogue {
        bias: &bias,
        scale: &scale,
        mode,
        lut: None,
        residual: None,
    };
    let elem = if mode == EpiMode::Float { 4 } else { 1 };
    let ldc = n + 1;
    let mut got = vec![0u8; m * ldc * elem];
    let mut want = got.clone();
    let reference = select(Level::Scalar);
    unsafe {
        gemm(k, m, a.as_ptr(), lda, &b, &epi, got.as_mut_ptr(), ldc);
        gemm(
            &reference,
            m,
            a.as_ptr(),
            lda,
            &b,
            &epi,
            want.as_mut_ptr(),
            ldc,
        );
    }
    assert_eq!(got, want, "{} m={m} n={n} k={kk} {mode:?}", k.name);
    // The reference against naive arithmetic.
    for i in 0..m {
        for j in 0..n {
            let acc: i32 = (0..kk)
                .map(|q| a[i * lda + q] as i32 * w[j * kk + q] as i32)
                .sum::<i32>()
                + bias[j];
            let e = epilogue_one(acc, scale[j], mode);
            match e {
                Ok(q) => assert_eq!(want[i * ldc + j], q),
                Err(f) => {
                    let o = (i * ldc + j) * 4;
                    assert_eq!(f32::from_ne_bytes(want[o..o + 4].try_into().unwrap()), f);
                }
            }
        }
    }
}

#[test]
fn every_gemm_kernel_matches_the_reference() {
    let mut rng = Rng(0x1234_5678);
    for k in registry() {
        if !k.level.supported() {
            eprintln!("skipped {}: host lacks {:?}", k.name, k.level);
            continue;
        }
        for &m in &[1, 2, 3, 7, 8, 9, 19] {
            for &n in &[1, 15, 16, 17, 35, 56] {
                for &kk in &[1, 4, 8, 11, 17, 27, 63, 100] {
                    for mode in [
                        EpiMode::Quant {
                            zp: 0,
                            lo: 0,
                            hi: 255,
                        },
                        EpiMode::Quant {
                            zp: 255,
                            lo: 10,
                            hi: 255,
                        },
                        EpiMode::Quant {
                            zp: 128,
                            lo: 0,
                            hi: 200,
                        },
                        EpiMode::Float,
                    ] {
                        run_case(&k, m, n, kk, mode, &mut rng);
                    }
                }
            }
        }
    }
}

/// Wide outputs: more blocks than a kernel may keep per-block state for at once (the
/// neondot kernel's start values go 32 blocks at a time), several full row tiles.
#[test]
fn every_gemm_kernel_on_wide_outputs() {
    let mut rng = Rng(0x5eed);
    for k in registry().into_iter().filter(|k| k.level.supported()) {
        for &(m, n, kk) in &[(9, 529, 24), (13, 1040, 17), (4, 512, 40)] {
            for mode in [
                EpiMode::Quant {
                    zp: 7,
                    lo: 7,
                    hi: 255,
                },
                EpiMode::Float,
            ] {
                run_case(&k, m, n, kk, mode, &mut rng);
            }
        }
    }
}

#[test]
fn gemm_threads_agree() {
    let mut rng = Rng(7);
    let k = select(Level::Avx512Vnni);
    for threads in [1, 2, 4] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            // 4 M multiply-adds: split into chunks at 2 and 4 threads
            run_case(
                &k,
                301,
                40,
                333,
                EpiMode::Quant {
                    zp: 3,
                    lo: 0,
                    hi: 255,
                },
                &mut rng,
            )
        });
    }
}

/// Every kernel at the ends of the ranges: the largest i16 pair sums a kernel that adds two
/// products in i16 can meet (`a = 0` flips to -128, weights -127), and the other signs.
#[test]
fn every_gemm_kernel_at_extreme_values() {
    for k in registry().into_iter().filter(|k| k.level.supported()) {
        let wmin: i8 = if k.no_min_weight { -127 } else { -128 };
        for (av, wv) in [(0u8, wmin), (0, 127), (255, 127), (255, wmin), (128, wmin)] {
            let (m, n, kk) = (5, 17, 37);
            let a = vec![av; m * kk + 64];
            let w = vec![wv; n * kk];
            let b = PackedB::new(&w, n, kk);
            let np = n.div_ceil(NR) * NR;
            let bias = vec![0i32; np];
            let scale = vec![1.0f32; np];
            let epi = Epilogue {
                bias: &bias,
                scale: &scale,
                mode: EpiMode::Float,
                lut: None,
                residual: None,
            };
            let mut got = vec![0u8; m * n * 4];
            unsafe { gemm(&k, m, a.as_ptr(), kk, &b, &epi, got.as_mut_ptr(), n) };
            let want = (av as i32 * wv as i32 * kk as i32) as f32;
            for v in got.chunks(4) {
                let v = f32::from_ne_bytes(v.try_into().unwrap());
                assert_eq!(v, want, "{} a={av} w={wv}", k.name);
            }
        }
    }
}

#[test]
fn weights_with_min_pick_a_kernel_that_takes_them() {
    let w = [-128i8, 3, 5, 7];
    assert!(PackedB::new(&w, 1, 4).has_min);
    assert!(!PackedB::new(&[-127i8, 3, 5, 7], 1, 4).has_min);
    for level in [
        Level::Scalar,
        Level::Neon,
        Level::NeonDot,
        Level::Avx2,
        Level::Avx512Vnni,
    ] {
        assert!(!select_for(level, true).no_min_weight);
    }
}

/// On 32-bit Arm with NEON the engine takes the assembly kernels (so the comparisons above ran
/// them); `SPECK_EXPECT_NEON=1` (set by scripts/test_arm.sh, whose qemu CPU has NEON) makes a
/// missing detection a failure rather than a silent scalar run.
#[cfg(target_arch = "arm")]
#[test]
fn armv7_neon_kernels_are_selected() {
    let expect = std::env::var("SPECK_EXPECT_NEON").is_ok_and(|v| v == "1");
    if !Level::Neon.supported() {
        assert!(!expect, "SPECK_EXPECT_NEON=1 but AT_HWCAP shows no NEON");
        eprintln!("no NEON on this CPU: armv7 NEON kernels not tested");
        return;
    }
    let level = Level::from_isa(crate::kernels::Isa::Neon);
    assert_eq!(select_for(level, false).name, "gemm_qs8_4x16c4_armv7neon");
    assert_eq!(select_for(level, true).name, "gemm_qs8_4x16c4_scalar");
    let g = crate::kernels::qs8::dwconv::DwGeom {
        h: 8,
        w: 8,
        c: 24,
        oh: 8,
        ow: 8,
        k: [3, 3],
        s: [1, 1],
        p: [1, 1],
        d: [1, 1],
    };
    let d = crate::kernels::qs8::dwconv::select_for(level, &g, true);
    assert_eq!(d.name, "dwconv_qs8_kxk_16c_armv7neon");
    assert_eq!(crate::kernels::isa(), crate::kernels::Isa::Neon);
}

#[test]
fn packed_bytes_are_adopted_only_when_consistent() {
    let mut rng = Rng(77);
    for &(n, k) in &[(1, 1), (16, 4), (17, 13), (33, 64), (5, 3)] {
        let mut w: Vec<i8> = rng
            .bytes(n * k)
            .into_iter()
            .map(|v| (v as i8).max(-127))
            .collect();
        for min in [false, true] {
            w[0] = if min { i8::MIN } else { 1 };
            let b = PackedB::new(&w, n, k);
            let back = PackedB::from_packed(b.data.clone(), n, k).unwrap();
            assert_eq!(back, b, "n {n} k {k}");
            assert_eq!(back.has_min, min);
            for j in 0..n {
                assert_eq!(
                    b.row_sum(j),
                    w[j * k..(j + 1) * k].iter().map(|&v| v as i32).sum::<i32>()
                );
            }
        }
        let b = PackedB::new(&w, n, k);
        // wrong length, or read as another shape
        assert!(PackedB::from_packed(b.data[1..].to_vec(), n, k).is_err());
        assert!(PackedB::from_packed(b.data.clone(), n + 16, k).is_err());
        assert!(PackedB::from_packed(vec![], 0, k).is_err());
        // a changed weight no longer matches its channel's stored sum
        let mut bad = b.data.clone();
        bad[0] = bad[0].wrapping_add(1);
        assert!(PackedB::from_packed(bad, n, k).is_err());
        // a changed sum
        let mut bad = b.data.clone();
        let k4 = k.div_ceil(4);
        bad[k4 * NR * 4] ^= 1;
        assert!(PackedB::from_packed(bad, n, k).is_err());
        // padding: k past K (in channel 0), and a channel past N
        if k % 4 != 0 {
            let mut bad = b.data.clone();
            bad[(k4 - 1) * NR * 4 + 3] = 1;
            assert!(PackedB::from_packed(bad, n, k).is_err());
        }
        if n % NR != 0 {
            let mut bad = b.data.clone();
            let last = (n.div_ceil(NR) - 1) * PackedB::block_len(k4);
            bad[last + (NR - 1) * 4] = 1;
            assert!(PackedB::from_packed(bad, n, k).is_err());
        }
    }
}
