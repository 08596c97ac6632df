//! Single-threaded driver (qemu-user here hangs on thread creation, so neither libtest nor
//! rayon can run): the same case grid as gemm/tests.rs, tiles driven on the main thread.
use qemu_qs8_gemm::gemm::*;
use qemu_qs8_gemm::Level;
use qemu_qs8_gemm::Rng;

unsafe fn drive(
    k: &GemmKernel,
    m: usize,
    a: &[u8],
    lda: usize,
    b: &PackedB,
    epi: &Epilogue,
    c: &mut [u8],
    ldc: usize,
) {
    let elem = if epi.mode == EpiMode::Float { 4 } else { 1 };
    for r0 in (0..m).step_by(k.mr) {
        let mr = k.mr.min(m - r0);
        for blk in 0..b.n.div_ceil(NR) {
            let n0 = blk * NR;
            (k.run)(
                mr,
                NR.min(b.n - n0),
                b.k4,
                a.as_ptr().add(r0 * lda),
                lda,
                b.data.as_ptr().add(blk * b.k4 * NR * 4),
                epi.bias.as_ptr().add(n0),
                epi.scale.as_ptr().add(n0),
                epi.mode,
                c.as_mut_ptr().add((r0 * ldc + n0) * elem),
                ldc,
            );
        }
    }
}

fn run_case(
    k: &GemmKernel,
    reference: &GemmKernel,
    m: usize,
    n: usize,
    kk: usize,
    mode: EpiMode,
    rng: &mut Rng,
) {
    let lda = kk + (m % 3);
    let mut a = rng.bytes(m * lda + 64);
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
    };
    let elem = if mode == EpiMode::Float { 4 } else { 1 };
    let ldc = n + 1;
    let mut got = vec![0u8; m * ldc * elem];
    let mut want = got.clone();
    unsafe {
        drive(k, m, &a, lda, &b, &epi, &mut got, ldc);
        drive(reference, m, &a, lda, &b, &epi, &mut want, ldc);
    }
    assert_eq!(got, want, "{} m={m} n={n} k={kk} {mode:?}", k.name);
    for i in 0..m {
        for j in 0..n {
            let acc: i32 = (0..kk)
                .map(|q| a[i * lda + q] as i32 * w[j * kk + q] as i32)
                .sum::<i32>()
                + bias[j];
            match epilogue_one(acc, scale[j], mode) {
                Ok(q) => assert_eq!(want[i * ldc + j], q),
                Err(f) => {
                    let o = (i * ldc + j) * 4;
                    assert_eq!(f32::from_ne_bytes(want[o..o + 4].try_into().unwrap()), f);
                }
            }
        }
    }
}

fn main() {
    // every GEMM kernel the host runs against the scalar reference; exit status says pass/fail
    let reference = select(Level::Scalar);
    let mut rng = Rng(0x1234_5678);
    let mut skipped = 0;
    for k in registry() {
        if !k.level.supported() {
            println!("SKIPPED {}: host lacks {:?}", k.name, k.level);
            skipped += 1;
            continue;
        }
        let mut cases = 0;
        for &m in &[1, 2, 3, 4, 5, 7, 8, 9, 19] {
            for &n in &[1, 15, 16, 17, 35] {
                for &kk in &[1, 3, 4, 5, 17, 63, 200] {
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
                        run_case(&k, &reference, m, n, kk, mode, &mut rng);
                        cases += 1;
                    }
                }
            }
        }
        println!(
            "PASSED {}: {cases} cases bit-identical to {}",
            k.name, reference.name
        );
    }
    println!("{skipped} skipped");
}
