//! `dwconv_qs8_kxk_64c_rows4_avx512vnni`: 64 channels per step on `vpdpbusd`, four kernel rows
//! per instruction; for convs at column stride 1 ([`suits`]).
//!
//! `vpdpbusd` sums the 4 bytes of each dword lane. The kernel gives it 4 kernel rows of one
//! channel in a dword: for each band of output rows ([`super::row_group_band`]) it first
//! builds a row-interleaved copy of the input columns the band reads (the scratch, per
//! thread), where dword lane `(L, i)` of plane `k` holds the band's input rows `4G..4G + 4`
//! (row group `G`) of vector byte `16L + 4k + i`, four `vpunpck` per 64-byte piece and plane
//! pair. One `vpdpbusd` then does 4 taps (a column of the kernel) for 16 channels, where a
//! byte-per-channel layout would need one per tap: a 3 x 3 conv takes 3 per 16 channels
//! instead of 9, a 5 x 5 10 instead of 25. At row stride and dilation 1 every output row of
//! the band reads that one copy, row `r` with the kernel's rows shifted `r` bytes on (a 3x3
//! band is two rows over four input rows, a 5x5 band four rows over eight), so the packing
//! holds the weights once per shift.
//!
//! The scratch also holds the zero point `zx` where a tap falls outside the image, so the
//! loop has no border path: the zero point is folded, `sum (x - zx) w = sum x w - zx sum w`,
//! and a `zx` byte then contributes 0, as the contract requires. Rows past the kernel's last
//! row in its last group have zero weights.
//!
//! The scratch is split by column phase modulo the stride (`fx = q * s + phase`), so the
//! columns that neighbouring output pixels read at one tap are neighbours there at any
//! stride: one 64-byte load per plane and vector.
//!
//! Accumulator `k`'s lane `(L, i)` is vector byte `16L + 4k + i`; after requantization two
//! `vpackssdw` and one `vpackuswb` put the bytes back in order (they work within 128-bit
//! lanes), clamped with byte min/max (exact for bounds in 0..=255).
//!
//! Packing ([`pack`]): per block of 64 channels, per shift `t` of the band, per row group, per
//! kernel column, per plane `k`, 64 bytes (dword lane `(L, i)`, byte `r`: the weight of kernel
//! row `4G + r - t` of byte `16L + 4k + i`'s channel, zero outside the kernel), then the
//! block's `sum w` per (plane, lane) as 64 i32; stored in the `i16` buffer the engine keeps
//! for depthwise weights (opaque bytes here).
//!
//! Narrow convs (C = 16 or 32, see [`pixels_per_vector`]) pack `64 / C` neighbouring output
//! pixels into one vector instead of leaving most lanes idle: vector byte `b` is channel
//! `b % C` of pixel `b / C`, and the weights and sums repeat every C bytes. The unpacks keep
//! each 128-bit lane (16 bytes, one pixel's channels or half of them) apart, so the scratch
//! holds `C`-byte pieces per column and a vector of pixels is still one load.

// x86-only module: AVX-512 intrinsics are stable since 1.89, above the crate's Arm MSRV.
#![allow(clippy::incompatible_msrv)]

use super::{row_group_band, DwGeom};
use crate::kernels::qs8::gemm::EpiMode;
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Channels (vector bytes) per block.
const CB: usize = 64;

/// Output vectors (pixels, or groups of packed pixels) computed together.
const PX: usize = 4;

/// Kernel rows per row group (bytes of a dword).
const RG: usize = 4;

/// Weight bytes of one shift of a block: per row group, kernel column and plane 64 bytes.
fn shift_bytes(g: &DwGeom) -> usize {
    g.k[0].div_ceil(RG) * g.k[1] * 4 * CB
}

/// Bytes per block: the weights once per shift, then 64 i32 sums.
fn block_bytes(g: &DwGeom) -> usize {
    row_group_band(g) * shift_bytes(g) + CB * 4
}

/// Chosen at column stride 1 only (it computes any stride). At stride 2 the interleave runs for two input columns per output
/// pixel and the tap-major kernel is as fast or faster (`cargo bench --bench qs8_kernels`:
/// 112 x 112 x 64 3 x 3 s2 61 vs 54 us, 28 x 28 x 240 s2 equal; at stride 1 56 x 56 x 72
/// 3 x 3 83 vs 103 us, 7 x 7 x 960 5 x 5 37 vs 53 us).
pub fn suits(g: &DwGeom) -> bool {
    g.s[1] == 1
}

/// Pixels per vector: `64 / C` for the narrow convs packed across pixels, else 1.
pub fn pixels_per_vector(c: usize) -> usize {
    match c {
        16 | 32 => CB / c,
        _ => 1,
    }
}

/// Pack `[C][kh][kw]` int8 weights (see the module doc).
pub fn pack(w: &[i8], g: &DwGeom) -> Vec<i16> {
    let (kh, kw) = (g.k[0], g.k[1]);
    let pp = pixels_per_vector(g.c);
    // vector bytes with a channel: every channel once, or (packed pixels) all 64
    let lanes = if pp > 1 { CB } else { g.c };
    let blocks = lanes.div_ceil(CB);
    let (bb, sb, band) = (block_bytes(g), shift_bytes(g), row_group_band(g));
    let mut bytes = vec![0u8; blocks * bb];
    for lane in 0..lanes {
        let c = lane % g.c;
        let (b, pos) = (lane / CB, lane % CB);
        // vector byte 16L + 4k + i is dword lane 4L + i of plane k
        let (k, dw) = ((pos % 16) / 4, 4 * (pos / 16) + pos % 4);
        let blk = &mut bytes[b * bb..(b + 1) * bb];
        let mut sum = 0i32;
        for ky in 0..kh {
            for kx in 0..kw {
                let v = w[(c * kh + ky) * kw + kx];
                for t in 0..band {
                    // output row `oy + t` reads kernel row `ky` from the band's row `ky + t`
                    let row = ky + t;
                    let at = t * sb + (((row / RG) * kw + kx) * 4 + k) * CB + dw * 4 + row % RG;
                    blk[at] = v as u8;
                }
                sum += v as i32;
            }
        }
        let at = band * sb + (k * 16 + dw) * 4;
        blk[at..at + 4].copy_from_slice(&sum.to_le_bytes());
    }
    bytes
        .chunks(2)
        .map(|p| i16::from_le_bytes([p[0], *p.get(1).unwrap_or(&0)]))
        .collect()
}

thread_local! {
    /// The row-interleaved input columns of the current output row (one block at a time).
    static SCRATCH: RefCell<Vec<__m512i>> = const { RefCell::new(Vec::new()) };
}

/// Output vectors per column tile: the scratch of one tile stays in L1 between its writes
/// and reads (a whole row's would not at 112 x 64 and stride 2).
const TILE: usize = 16;

/// Where the scratch keeps what, for one geometry.
#[derive(Clone, Copy)]
struct Layout {
    /// pixels per vector
    pp: usize,
    /// row groups
    groups: usize,
    /// column stride (phases)
    s: usize,
    /// output vectors in the row
    vectors: usize,
    /// scratch vectors a tile's output vectors read past their own (the kernel's reach)
    reach: usize,
    /// vectors per (group, plane, phase)
    vecs: usize,
}

impl Layout {
    fn of(g: &DwGeom) -> Layout {
        let pp = pixels_per_vector(g.c);
        let s = g.s[1];
        // per phase: a tile's output pixels' columns, plus the kernel's reach to the right
        let reach = ((g.k[1] - 1) * g.d[1] / s).div_ceil(pp);
        Layout {
            pp,
            groups: g.k[0].div_ceil(RG),
            s,
            vectors: g.ow.div_ceil(pp),
            reach,
            vecs: TILE + reach,
        }
    }

    /// Vectors in all.
    fn len(&self) -> usize {
        self.groups * 4 * self.s * self.vecs
    }

    /// First vector of group `grp`, plane `k`, phase `ph`.
    fn plane(&self, grp: usize, k: usize, ph: usize) -> usize {
        ((grp * 4 + k) * self.s + ph) * self.vecs
    }
}

/// Output rows `oy..oy + rows`, band by band; see the module doc of `dwconv` for the
/// contract (weights packed by [`pack`]).
///
/// # Safety
/// Pointers as in the contract; the host must have AVX-512 F/BW and VNNI.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn dwconv_qs8_kxk_64c_rows4_avx512vnni(
    g: &DwGeom,
    oy: usize,
    rows: usize,
    x: *const u8,
    zx: i32,
    w: *const i16,
    bias: *const i32,
    scale: *const f32,
    mode: EpiMode,
    out: *mut u8,
) {
    let lay = Layout::of(g);
    // this thread's scratch, grown to fit (no other kernel runs on the thread meanwhile)
    let sc = SCRATCH.with_borrow_mut(|buf| {
        if buf.len() < lay.len() {
            buf.resize(lay.len(), _mm512_setzero_si512());
        }
        buf.as_mut_ptr()
    });
    let blocks = if lay.pp > 1 { 1 } else { g.c.div_ceil(CB) };
    let (band, bb) = (row_group_band(g), block_bytes(g));
    let row_bytes = g.ow * g.c * mode.elem_bytes();
    for r in (0..rows).step_by(band) {
        let n = band.min(rows - r);
        let out = out.add(r * row_bytes);
        for b in 0..blocks {
            let wb = (w as *const u8).add(b * bb);
            block(g, &lay, oy + r, n, x, zx, wb, b, bias, scale, mode, sc, out);
        }
    }
}

/// Fill the scratch with block `b`'s row-interleaved input for the band of `n_rows` output rows
/// from `oy`: `nq` vectors per phase from vector `qa` on (scratch vector `i` is vector
/// `qa + i`).
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn interleave(
    g: &DwGeom,
    lay: &Layout,
    oy: usize,
    n_rows: usize,
    x: *const u8,
    zx: i32,
    b: usize,
    sc: *mut __m512i,
    qa: usize,
    nq: usize,
) {
    let (c, pp, s) = (g.c, lay.pp, lay.s);
    let c0 = b * CB;
    let n = CB.min(c - c0);
    let in_mask: __mmask64 = if n >= CB { !0 } else { (1u64 << n) - 1 };
    let vzx = _mm512_set1_epi8(zx as u8 as i8);
    let zrow = [zx as u8; CB];
    for grp in 0..lay.groups {
        // the band's rows `t` (row stride and dilation 1 when n_rows > 1); rows past what it
        // reads (zero weights) and outside the image read `zx`
        let rows: [Option<*const u8>; RG] = std::array::from_fn(|r| {
            let t = grp * RG + r;
            let iy = (oy * g.s[0] + t * g.d[0]) as isize - g.p[0] as isize;
            (t < n_rows - 1 + g.k[0] && iy >= 0 && (iy as usize) < g.h)
                .then(|| x.add(iy as usize * g.w * c))
        });
        for ph in 0..s {
            let dst: [*mut __m512i; 4] = std::array::from_fn(|k| sc.add(lay.plane(grp, k, ph)));
            // (macros, not closures: these must inline into the loops)
            macro_rules! put {
                ($q:expr, $r0:expr, $r1:expr, $r2:expr, $r3:expr) => {{
                    let q: usize = $q - qa;
                    let (r0, r1, r2, r3) = ($r0, $r1, $r2, $r3);
                    // rows as byte pairs, then as dwords (within 128-bit lanes): plane k
                    // gets bytes 4k..4k + 4 of each lane, rows 0..4 in each dword
                    let (lo01, hi01) = (_mm512_unpacklo_epi8(r0, r1), _mm512_unpackhi_epi8(r0, r1));
                    let (lo23, hi23) = (_mm512_unpacklo_epi8(r2, r3), _mm512_unpackhi_epi8(r2, r3));
                    _mm512_storeu_si512(dst[0].add(q) as *mut _, _mm512_unpacklo_epi16(lo01, lo23));
                    _mm512_storeu_si512(dst[1].add(q) as *mut _, _mm512_unpackhi_epi16(lo01, lo23));
                    _mm512_storeu_si512(dst[2].add(q) as *mut _, _mm512_unpacklo_epi16(hi01, hi23));
                    _mm512_storeu_si512(dst[3].add(q) as *mut _, _mm512_unpackhi_epi16(hi01, hi23));
                }};
            }
            // vectors [q0, q1) have all their pixels inside the image
            let first = |q: usize| (q * pp * s + ph) as isize - g.p[1] as isize;
            let reach = ((pp - 1) * s) as isize;
            let (mut q0, mut q1) = (qa, qa + nq);
            while q0 < q1 && first(q0) < 0 {
                q0 += 1;
            }
            while q1 > q0 && first(q1 - 1) + reach >= g.w as isize {
                q1 -= 1;
            }
            if pp > 1 && s > 1 {
                // packed pixels at a stride: every vector gathered piece by piece (rare)
                q1 = q0;
            }
            let border = |r: Option<*const u8>, fx0: usize| match r {
                Some(row) => load(g, pp, row, fx0, c0, in_mask, vzx),
                None => vzx,
            };
            for q in (qa..q0).chain(q1..qa + nq) {
                let fx0 = q * pp * s + ph;
                put!(
                    q,
                    border(rows[0], fx0),
                    border(rows[1], fx0),
                    border(rows[2], fx0),
                    border(rows[3], fx0)
                );
            }
            if q0 == q1 {
                continue;
            }
            // inside: no checks, each row's pointer steps `pp * s` pixels per vector; a row
            // outside the image (or past the kernel) reads a `zx` vector that stays in place
            let at = first(q0) as usize * c + c0;
            let (mut p, mut st) = ([zrow.as_ptr(); RG], [0usize; RG]);
            for r in 0..RG {
                if let Some(row) = rows[r] {
                    (p[r], st[r]) = (row.add(at), pp * s * c);
                }
            }
            macro_rules! interior {
                (|$a:ident| $load:expr) => {
                    for q in q0..q1 {
                        let i = q - q0;
                        put!(
                            q,
                            {
                                let $a = p[0].add(i * st[0]);
                                $load
                            },
                            {
                                let $a = p[1].add(i * st[1]);
                                $load
                            },
                            {
                                let $a = p[2].add(i * st[2]);
                                $load
                            },
                            {
                                let $a = p[3].add(i * st[3]);
                                $load
                            }
                        );
                    }
                };
            }
            if pp == 1 {
                interior!(|a| _mm512_maskz_loadu_epi8(in_mask, a as *const i8));
            } else {
                interior!(|a| _mm512_loadu_si512(a as *const _));
            }
        }
    }
}

/// One input row's 64 bytes (image row `row`) for the vector whose first framed column is
/// `fx0` (its `pp` pixels `s` columns apart; block `c0`'s `in_mask` bytes when `pp` is 1);
/// `zx` outside the image.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn load(
    g: &DwGeom,
    pp: usize,
    row: *const u8,
    fx0: usize,
    c0: usize,
    in_mask: __mmask64,
    vzx: __m512i,
) -> __m512i {
    let (c, s) = (g.c, g.s[1]);
    let ix0 = fx0 as isize - g.p[1] as isize;
    let inside = |ix: isize| ix >= 0 && (ix as usize) < g.w;
    if pp == 1 {
        if inside(ix0) {
            _mm512_mask_loadu_epi8(vzx, in_mask, row.add(ix0 as usize * c + c0) as *const i8)
        } else {
            vzx
        }
    } else if s == 1 && inside(ix0) && inside(ix0 + pp as isize - 1) {
        _mm512_loadu_si512(row.add(ix0 as usize * c) as *const _)
    } else {
        let mut v = vzx;
        for j in 0..pp {
            let ix = ix0 + (j * s) as isize;
            if inside(ix) {
                // piece j (C bytes) sits j * C bytes into the vector
                let piece = (((1u128 << c) - 1) as u64) << (j * c);
                let at = row.add(ix as usize * c).wrapping_sub(j * c);
                v = _mm512_mask_loadu_epi8(v, piece, at as *const i8);
            }
        }
        v
    }
}

/// Block `b` of the band of `n` output rows from `oy` (`out` its first row), a column tile
/// at a time: interleave, then the taps of each row.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn block(
    g: &DwGeom,
    lay: &Layout,
    oy: usize,
    n_rows: usize,
    x: *const u8,
    zx: i32,
    wb: *const u8,
    b: usize,
    bias: *const i32,
    scale: *const f32,
    mode: EpiMode,
    sc: *mut __m512i,
    out: *mut u8,
) {
    let (c, pp, s, kw) = (g.c, lay.pp, lay.s, g.k[1]);
    let c0 = b * CB;
    // channels of one pixel in this block
    let n = CB.min(c - c0);
    let float_out = matches!(mode, EpiMode::Float);
    let (zp, lo, hi) = match mode {
        EpiMode::Quant { zp, lo, hi } => (zp, lo, hi),
        EpiMode::Float => (0, 0, 255),
    };
    debug_assert!((0..=255).contains(&zp) && 0 <= lo && lo <= hi && hi <= 255);
    let vzp = _mm512_set1_epi32(zp);
    let (vlo, vhi) = (_mm512_set1_epi8(lo as i8), _mm512_set1_epi8(hi as i8));
    // Bias minus zx * sum(w) and the scales, in the accumulators' (plane, lane) order: the
    // block's values are loaded as 64 lanes in byte order (lane l: channel l % C when pixels
    // are packed; lanes past the channels 0), then moved by two-source permutes.
    let sb = shift_bytes(g);
    let sums = wb.add(row_group_band(g) * sb) as *const i32;
    let row_bytes = g.ow * c * mode.elem_bytes();
    let (bv, sv) = super::avx512vnni::block_params(bias, scale, c0, n, c, pp);
    let lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    // dword lane 4L + i of plane k is byte 16L + 4k + i: element 4k + i of part L; the
    // permutes pick part L from the pair (L even: first source, odd: second) by index bit 4
    let pair = _mm512_slli_epi32(
        _mm512_and_si512(_mm512_srli_epi32(lane, 2), _mm512_set1_epi32(1)),
        4,
    );
    let within = _mm512_or_si512(pair, _mm512_and_si512(lane, _mm512_set1_epi32(3)));
    let vzx32 = _mm512_set1_epi32(zx);
    let mut init = [_mm512_setzero_si512(); 4];
    let mut vs = [_mm512_setzero_ps(); 4];
    for k in 0..4 {
        let idx = _mm512_add_epi32(within, _mm512_set1_epi32(4 * k as i32));
        let bi = _mm512_mask_blend_epi32(
            0xff00,
            _mm512_permutex2var_epi32(bv[0], idx, bv[1]),
            _mm512_permutex2var_epi32(bv[2], idx, bv[3]),
        );
        vs[k] = _mm512_mask_blend_ps(
            0xff00,
            _mm512_permutex2var_ps(sv[0], idx, sv[1]),
            _mm512_permutex2var_ps(sv[2], idx, sv[3]),
        );
        let sum = _mm512_loadu_si512(sums.add(k * 16) as *const _);
        init[k] = _mm512_sub_epi32(bi, _mm512_mullo_epi32(sum, vzx32));
    }
    let mask_of = |bytes: usize| -> __mmask64 {
        if bytes >= CB {
            !0
        } else {
            (1u64 << bytes) - 1
        }
    };
    // `bytes` output values of the vector whose first pixel is `o`, in the row at `out`.
    let store = |out: *mut u8, o: usize, acc: &[__m512i; 4], bytes: usize| {
        let f: [__m512; 4] =
            std::array::from_fn(|k| _mm512_mul_ps(_mm512_cvtepi32_ps(acc[k]), vs[k]));
        if float_out {
            let mut tmp = [[0f32; 16]; 4];
            for k in 0..4 {
                _mm512_storeu_ps(tmp[k].as_mut_ptr(), f[k]);
            }
            let dst = (out as *mut f32).add(o * c + c0);
            for p in 0..bytes {
                *dst.add(p) = tmp[(p % 16) / 4][(p / 16) * 4 + p % 4];
            }
        } else {
            let q = |f: __m512| _mm512_add_epi32(_mm512_cvtps_epi32(f), vzp);
            // saturating packs, then the bounds: clamp(v, lo, hi) for bounds in 0..=255
            let v = _mm512_packus_epi16(
                _mm512_packs_epi32(q(f[0]), q(f[1])),
                _mm512_packs_epi32(q(f[2]), q(f[3])),
            );
            let v = _mm512_min_epu8(_mm512_max_epu8(v, vlo), vhi);
            _mm512_mask_storeu_epi8(out.add(o * c + c0) as *mut i8, mask_of(bytes), v);
        }
    };
    // Planes with a channel: all four unless the block is under 16 channels.
    let planes = if pp > 1 || n >= 16 { 4 } else { n.div_ceil(4) };
    // bytes from plane k to plane k + 1 of a group
    let plane_bytes = lay.plane(0, 1, 0) * CB;
    // `G` output vectors from vector `v0` on, `K` planes: each weight vector is loaded once
    // for all of them, and K * G independent accumulator chains hide vpdpbusd's latency.
    macro_rules! step {
        ($G:expr, $K:expr, $v0:expr, $va:expr, $w:expr, $out:expr) => {{
            let (v0, va): (usize, usize) = ($v0, $va);
            let mut acc = [init; $G];
            let mut wt: *const u8 = $w;
            // vector v0's pixels start at column v0 * pp + dq of phase ph (bytes of pb) in
            // the tile's scratch, which starts at vector va
            let first = (sc as *const u8).add((v0 - va) * CB);
            for grp in 0..lay.groups {
                let group = first.add(lay.plane(grp, 0, 0) * CB);
                let (mut ph, mut dq) = (0, 0);
                for _ in 0..kw {
                    let tap = group.add(ph * lay.vecs * CB + dq * (CB / pp));
                    for k in 0..$K {
                        let wv = _mm512_loadu_si512(wt.add(k * CB) as *const _);
                        let p = tap.add(k * plane_bytes);
                        for (v, a) in acc.iter_mut().enumerate() {
                            let xv = _mm512_loadu_si512(p.add(v * CB) as *const _);
                            a[k] = _mm512_dpbusd_epi32(a[k], xv, wv);
                        }
                    }
                    wt = wt.add(4 * CB);
                    // the next kernel column: d columns on, (kx * d) % s and (kx * d) / s
                    ph += g.d[1];
                    while ph >= s {
                        ph -= s;
                        dq += 1;
                    }
                }
            }
            for (v, a) in acc.iter().enumerate() {
                let o = (v0 + v) * pp;
                let bytes = if pp > 1 { (g.ow - o).min(pp) * c } else { n };
                store($out, o, a, bytes);
            }
        }};
    }
    macro_rules! tile {
        ($K:expr, $va:expr, $vb:expr, $w:expr, $out:expr) => {{
            let mut v = $va;
            while v + PX <= $vb {
                step!(PX, $K, v, $va, $w, $out);
                v += PX;
            }
            while v < $vb {
                step!(1, $K, v, $va, $w, $out);
                v += 1;
            }
        }};
    }
    for va in (0..lay.vectors).step_by(TILE) {
        let vb = (va + TILE).min(lay.vectors);
        interleave(g, lay, oy, n_rows, x, zx, b, sc, va, vb - va + lay.reach);
        // every row of the band over the one interleave, each with its shift's weights
        for r in 0..n_rows {
            let (w, out) = (wb.add(r * sb), out.add(r * row_bytes));
            match planes {
                1 => tile!(1, va, vb, w, out),
                2 => tile!(2, va, vb, w, out),
                _ => tile!(4, va, vb, w, out),
            }
        }
    }
}
