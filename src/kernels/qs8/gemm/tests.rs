//! Every GEMM kernel the host runs against the scalar reference (bit-exact), and the
//! reference against naive i32 arithmetic.

use super::*;
use crate::kernels::qs8::tests::Rng;

fn run_case(k: &GemmKernel, m: usize, n: usize, kk: usize, mode: EpiMode, rng: &mut Rng) {
    let lda = kk + (m % 3); // odd strides too
    let mut a = rng.bytes(m * lda + 64);
    // force extreme activations somewhere
    a[0] = 255;
    let mut w: Vec<i8> = rng.bytes(n * kk).into_iter().map(|v| v as i8).collect();
    w[0] = -128;
    *w.last_mut().unwrap() = 127;
    let b = PackedB::new(&w, n, kk);
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
            for &n in &[1, 15, 16, 17, 35] {
                for &kk in &[1, 4, 17, 63] {
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
            run_case(
                &k,
                77,
                40,
                33,
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
