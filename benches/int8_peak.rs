//! This machine's int8 peak, to set kernel rates against: register-only loops of
//! `vpdpbusd` (AVX-512 VNNI) on zmm and ymm, 12 independent accumulators (enough to cover the
//! instruction's latency), plus the fp32 FMA peak on zmm for comparison. One thread.
//!
//! `cargo bench --bench int8_peak` (prints GMAC/s; an ISA the host lacks is reported, not run).

#[cfg(target_arch = "x86_64")]
#[allow(clippy::incompatible_msrv)] // x86 only: AVX-512 intrinsics are stable since 1.89
mod x86 {
    use std::arch::x86_64::*;
    use std::time::Instant;

    const ITERS: u64 = 20_000_000;

    macro_rules! twelve {
        ($acc:ident, $e:expr) => {
            for a in $acc.iter_mut() {
                *a = $e(*a);
            }
        };
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn vnni_zmm() -> (u64, i32) {
        let x = _mm512_set1_epi32(std::hint::black_box(0x01010101));
        let w = _mm512_set1_epi32(std::hint::black_box(0x01ff01ff));
        let mut acc = [_mm512_setzero_si512(); 12];
        for _ in 0..ITERS {
            twelve!(acc, |a| _mm512_dpbusd_epi32(a, x, w));
        }
        let s = acc
            .iter()
            .fold(_mm512_setzero_si512(), |s, a| _mm512_add_epi32(s, *a));
        (ITERS * 12 * 64, _mm512_reduce_add_epi32(s))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn vnni_ymm() -> (u64, i32) {
        let x = _mm256_set1_epi32(std::hint::black_box(0x01010101));
        let w = _mm256_set1_epi32(std::hint::black_box(0x01ff01ff));
        let mut acc = [_mm256_setzero_si256(); 12];
        for _ in 0..ITERS {
            twelve!(acc, |a| _mm256_dpbusd_epi32(a, x, w));
        }
        let s = acc
            .iter()
            .fold(_mm256_setzero_si256(), |s, a| _mm256_add_epi32(s, *a));
        let mut out = [0i32; 8];
        _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, s);
        (ITERS * 12 * 32, out.iter().sum())
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn fma_zmm() -> (u64, i32) {
        let x = _mm512_set1_ps(std::hint::black_box(0.999));
        let w = _mm512_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm512_setzero_ps(); 12];
        for _ in 0..ITERS {
            twelve!(acc, |a| _mm512_fmadd_ps(a, x, w));
        }
        let s = acc
            .iter()
            .fold(_mm512_setzero_ps(), |s, a| _mm512_add_ps(s, *a));
        (ITERS * 12 * 16, _mm512_reduce_add_ps(s) as i32)
    }

    fn time(name: &str, unit: &str, f: unsafe fn() -> (u64, i32)) {
        let t = Instant::now();
        let (ops, sink) = unsafe { f() };
        let s = t.elapsed().as_secs_f64();
        println!(
            "{name:<28} {:8.1} {unit}/s  (checksum {sink})",
            ops as f64 / s / 1e9
        );
    }

    pub fn main() {
        let vnni = is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl");
        if vnni {
            time("int8 vpdpbusd zmm", "GMAC", vnni_zmm);
            time("int8 vpdpbusd ymm", "GMAC", vnni_ymm);
        } else {
            println!("int8 vpdpbusd: host lacks AVX-512 VNNI, not run");
        }
        if is_x86_feature_detected!("avx512f") {
            time("fp32 vfmadd zmm", "GFMA", fma_zmm);
        } else {
            println!("fp32 vfmadd zmm: host lacks AVX-512F, not run");
        }
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    x86::main();
    #[cfg(not(target_arch = "x86_64"))]
    println!("int8_peak: x86-64 only (Arm peaks come from instruction counts, see RESEARCH.md)");
}
