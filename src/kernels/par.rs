//! Memory-bound element-wise work split over rayon's current pool.
//!
//! Convs and GEMMs split their own tiles. The ops between them (quantize and dequantize at the
//! float islands' edges, element-wise float ops, LayerNorm, lookups) ran on one thread while
//! the others waited, which caps what 2 or 4 threads can give. Each piece computes exactly what
//! the whole would, element by element or row by row, so results do not depend on the number of
//! threads.

use rayon::prelude::*;
use std::ops::Range;

/// Elements below which a piece of element-wise work is not worth a rayon task (a task costs a
/// few microseconds; a vectorised row covers tens of thousands of elements in that time).
pub const MIN_PIECE: usize = 1 << 16;

/// Rows per piece when `rows` rows of `row` elements are split over the current pool, or
/// `None` when the work stays on this thread (one thread, or too little work for two pieces).
fn rows_per_piece(rows: usize, row: usize) -> Option<usize> {
    let threads = rayon::current_num_threads();
    // one piece per thread, none under MIN_PIECE elements
    let pieces = threads.min(rows).min(rows * row / MIN_PIECE);
    (pieces >= 2).then(|| rows.div_ceil(pieces))
}

/// Run `f(rows, piece)` over pieces of `y` made of whole rows of `row` elements (`rows` is the
/// pieces' row range), in parallel when the pool has threads to spare and the work is large.
pub fn rows_mut<T: Send>(y: &mut [T], row: usize, f: impl Fn(Range<usize>, &mut [T]) + Sync) {
    let rows = y.len().checked_div(row).unwrap_or(0);
    match rows_per_piece(rows, row) {
        None => f(0..rows, &mut y[..rows * row]),
        Some(per) => y[..rows * row]
            .par_chunks_mut(per * row)
            .enumerate()
            .for_each(|(i, piece)| {
                let r0 = i * per;
                f(r0..r0 + piece.len() / row, piece)
            }),
    }
}

/// Run `f(rows)` over pieces of `0..rows` (rows of `row` elements each, for sizing only), in
/// parallel like [`rows_mut`]. For outputs that a row range does not cover contiguously
/// (planes written at a pixel range); the caller keeps the pieces' writes disjoint.
pub fn ranges(rows: usize, row: usize, f: impl Fn(Range<usize>) + Sync) {
    match rows_per_piece(rows, row) {
        None => f(0..rows),
        Some(per) => (0..rows.div_ceil(per))
            .into_par_iter()
            .for_each(|i| f(i * per..((i + 1) * per).min(rows))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    #[test]
    fn rows_cover_every_row_once_on_any_pool() {
        for threads in [1, 2, 3, 4] {
            for (rows, row) in [
                (0, 5),
                (1, 7),
                (3, 1),
                (200_003, 1),
                (9097, 17),
                (9, 40_000),
            ] {
                // a partial row at the end, which no piece covers
                let tail = row - 1;
                let mut y = vec![0u32; rows * row + tail];
                pool(threads).install(|| {
                    rows_mut(&mut y, row, |r, piece| {
                        assert_eq!(piece.len(), r.len() * row);
                        for (k, v) in piece.iter_mut().enumerate() {
                            *v += (r.start * row + k) as u32 + 1;
                        }
                    })
                });
                let want: Vec<u32> = (0..rows * row).map(|i| i as u32 + 1).collect();
                assert_eq!(
                    &y[..rows * row],
                    &want[..],
                    "{threads} threads, {rows}x{row}"
                );
                assert!(
                    y[rows * row..].iter().all(|&v| v == 0),
                    "the tail is untouched"
                );
                assert_eq!(y.len(), rows * row + tail);
            }
        }
    }

    #[test]
    fn ranges_partition_the_rows() {
        for threads in [1, 2, 4] {
            for (rows, row) in [(0, 1), (1, 1), (130_001, 1), (300_001, 1), (33, 5000)] {
                let seen = Mutex::new(Vec::new());
                pool(threads).install(|| ranges(rows, row, |r| seen.lock().unwrap().push(r)));
                let mut seen = seen.into_inner().unwrap();
                seen.sort_by_key(|r| r.start);
                let mut next = 0;
                for r in &seen {
                    assert_eq!(r.start, next);
                    next = r.end;
                }
                assert_eq!(next, rows, "{threads} threads, {rows} rows");
                if threads == 1 || rows * row < 2 * MIN_PIECE {
                    assert_eq!(seen.len(), 1, "small work stays whole");
                } else {
                    assert!(
                        seen.len() >= 2 && seen.len() <= threads,
                        "{threads} threads"
                    );
                }
            }
        }
    }
}
