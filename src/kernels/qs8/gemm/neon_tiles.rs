//! The Rust side of the two aarch64 assembly GEMM kernels (`neondot` on dot-product cores,
//! `neonmull` on the others): per call, the accumulators' start values of every block
//! (`bias + 128 * sum_k w`, A being flipped to i8) and a per-thread buffer for a tile's
//! packed rows; then all the full tiles with u8 output in the kernel's assembly tile loop,
//! and the rest (the last partial tile, f32 outputs) block by block. Each kernel supplies
//! its tile height, start-value layout, packing size and assembly ([`AsmTiles`]).

use super::{EpiMode, PackedB, NR};
use std::cell::RefCell;

/// What a kernel's tile loop reloads for every tile (two `LDP`s).
#[repr(C)]
pub(super) struct TileArgs {
    /// the packed weights
    pub b: *const i8,
    /// the start values, [`AsmTiles::START`] per block
    pub start: *const i32,
    /// the multipliers, 16 per block
    pub scale: *const f32,
    /// full blocks of 16 channels (at least 1)
    pub full: usize,
}

/// Rows of A a tile may have (the tallest kernel's `MR`).
pub(super) const MAX_MR: usize = 4;

/// A kernel's assembly side.
pub(super) trait AsmTiles {
    /// Rows per tile (at most [`MAX_MR`]).
    const MR: usize;
    /// i32 start values per block.
    const START: usize;

    /// Bytes of a tile's packed rows for `k4` c4 groups.
    fn pack_len(k4: usize) -> usize;

    /// The [`AsmTiles::START`] start values of one block at `out`, from its 16 biases and
    /// its weight sums.
    ///
    /// # Safety
    /// 16 readable values at `bias` and `sums`, `START` writable at `out`.
    unsafe fn block_start(bias: *const i32, sums: *const i32, out: *mut i32);

    /// `tiles` full tiles (rows of A `lda` apart from `a`) with u8 output: per tile the
    /// `args.full` blocks (the first packs the rows into `pack`), then the last `nc` (0-15)
    /// channels; rows of C from `c`, `ldc` apart.
    ///
    /// # Safety
    /// The GEMM contract, `pack` writable for `pack_len(k4)` bytes.
    #[allow(clippy::too_many_arguments)]
    unsafe fn full_tiles(
        tiles: usize,
        k4: usize,
        a: *const u8,
        lda: usize,
        args: &TileArgs,
        nc: usize,
        pack: *mut u8,
        quant: [i32; 3],
        c: *mut u8,
        ldc: usize,
    );

    /// Block `blk` of a tile of `mr` rows at `rows` (rows past `mr` repeat row 0) in any
    /// output form: from `pack` when an earlier block of the tile `packed` it, else from the
    /// rows, packing them.
    ///
    /// # Safety
    /// The GEMM contract, `pack` as for [`AsmTiles::full_tiles`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn any_block(
        mr: usize,
        n: usize,
        k4: usize,
        rows: [*const u8; MAX_MR],
        pack: *mut u8,
        packed: bool,
        blk: usize,
        b: *const i8,
        start: *const i32,
        scale: *const f32,
        mode: EpiMode,
        c: *mut u8,
        ldc: usize,
    );
}

thread_local! {
    /// Per thread: the start values of every block of a call, then the current tile's packed
    /// rows (i32 units; grown, never shrunk or zeroed per call).
    static SCRATCH: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
}

/// One call of the GEMM contract (see the module doc of `gemm`) on kernel `K`.
///
/// # Safety
/// The contract's pointers, and whatever `K` needs of the host.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) unsafe fn drive<K: AsmTiles>(
    m: usize,
    n: usize,
    k4: usize,
    a: *const u8,
    lda: usize,
    b: *const i8,
    bias: *const i32,
    scale: *const f32,
    mode: EpiMode,
    c: *mut u8,
    ldc: usize,
) {
    let blocks = n.div_ceil(NR);
    let block_len = PackedB::block_len(k4);
    let (full, quant) = match mode {
        EpiMode::Quant { zp, lo, hi } => (n / NR, [zp, lo, hi]),
        EpiMode::Float => (0, [0; 3]),
    };
    SCRATCH.with_borrow_mut(|buf| {
        let need = blocks * K::START + K::pack_len(k4).div_ceil(4);
        if buf.len() < need {
            buf.resize(need, 0);
        }
        let start = buf.as_mut_ptr();
        let pack = start.add(blocks * K::START) as *mut u8;
        for blk in 0..blocks {
            let sums = b.add(blk * block_len + k4 * NR * 4) as *const i32;
            K::block_start(bias.add(blk * NR), sums, start.add(blk * K::START));
        }
        // Full tiles with u8 output in the assembly tile loop; the last partial tile (and f32
        // outputs) block by block.
        let tiles = if full > 0 { m / K::MR } else { 0 };
        if tiles > 0 {
            let args = TileArgs {
                b,
                start,
                scale,
                full,
            };
            K::full_tiles(tiles, k4, a, lda, &args, n % NR, pack, quant, c, ldc);
        }
        let c_row = ldc * mode.elem_bytes();
        let mut t = tiles * K::MR;
        while t < m {
            let mr = K::MR.min(m - t);
            // Rows past mr re-read row 0 (always readable); their results are not stored.
            let rows: [*const u8; MAX_MR] =
                std::array::from_fn(|i| a.add(t * lda + if i < mr { i * lda } else { 0 }));
            let c = c.add(t * c_row);
            for blk in 0..blocks {
                K::any_block(
                    mr,
                    n,
                    k4,
                    rows,
                    pack,
                    blk > 0,
                    blk,
                    b,
                    start,
                    scale,
                    mode,
                    c,
                    ldc,
                );
            }
            t += mr;
        }
    });
}
