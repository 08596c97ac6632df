//! Memory-bound element-wise work split over rayon's current pool.
//!
//! Convs and GEMMs split their own tiles. The ops between them (quantize and dequantize at the
//! float islands' edges, element-wise float ops, LayerNorm, lookups) ran on one thread while
//! the others waited, which caps what 2 or 4 threads can give. Each piece computes exactly what
//! the whole would, element by element or row by row, so results do not depend on the number of
//! threads.

use rayon::prelude::*;
use std::cell::Cell;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

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
    rows_mut_dyn(y, row, &f)
}

/// [`rows_mut`] through a trait object: rayon's splitting code then exists once per element
/// type instead of once per caller with the caller's loop inlined into it (tens of copies of
/// 10-20 KB each in the device binary); a piece pays one indirect call.
#[inline(never)]
fn rows_mut_dyn<T: Send>(y: &mut [T], row: usize, f: &(dyn Fn(Range<usize>, &mut [T]) + Sync)) {
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
    ranges_dyn(rows, row, &f)
}

/// [`ranges`] through a trait object (see [`rows_mut_dyn`]).
#[inline(never)]
fn ranges_dyn(rows: usize, row: usize, f: &(dyn Fn(Range<usize>) + Sync)) {
    match rows_per_piece(rows, row) {
        None => f(0..rows),
        Some(per) => (0..rows.div_ceil(per))
            .into_par_iter()
            .for_each(|i| f(i * per..((i + 1) * per).min(rows))),
    }
}

/// `f(i)` for `i` in `0..n` on rayon's current pool, at least `min_len` indices per task.
/// Through a trait object, like [`rows_mut`]: callers generic over an epilogue keep one copy
/// of rayon's splitting code between them.
#[inline(never)]
pub fn for_each(n: usize, min_len: usize, f: &(dyn Fn(usize) + Sync)) {
    (0..n)
        .into_par_iter()
        .with_min_len(min_len.max(1))
        .for_each(f);
}

/// [`for_each`] with per-task state: `f(state, i)`, each task's state made by `init`.
#[inline(never)]
pub fn for_each_init<S>(
    n: usize,
    min_len: usize,
    init: &(dyn Fn() -> S + Sync),
    f: &(dyn Fn(&mut S, usize) + Sync),
) {
    (0..n)
        .into_par_iter()
        .with_min_len(min_len.max(1))
        .for_each_init(init, f);
}

thread_local! {
    /// This thread runs [`with_hot_workers`]'s `f` or one of its spinners.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` (an inference: a sequence of ops, each with its own short parallel loops) on the
/// current pool with its other workers kept awake: each spins, taking any job the ops spawn
/// (`rayon::yield_now`), until `f` returns. Idle rayon workers go to sleep within
/// microseconds and waking one costs tens of microseconds in a VM, so between ops of 10-50 us
/// the second thread arrived after the first had done most of a loop (2-thread samples of
/// MobileNetV3-L's GEMMs split 18.6% / 10.7%). As OpenMP's active wait policy in ncnn, this
/// burns the pool's cores for the length of `f` only, and only when the pool has no more
/// workers than the machine has cores.
///
/// A spinner returns at once on a thread that already runs `f` or a spinner: a worker that
/// waits inside a join may pick up a spinner job, and spinning there would stop it from
/// returning to the join (and `f` from ever finishing).
pub fn with_hot_workers<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let threads = rayon::current_num_threads();
    // More workers than cores: spinners would take the cores from the threads with work
    // (4 threads on this 2-core host: 2.2 -> 60 ms per MobileNetV3-L inference).
    // (`available_parallelism` reads cgroup files: once per process, not per inference)
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads <= 1 || threads > cores || rayon::current_thread_index().is_none() {
        return f();
    }
    let done = AtomicBool::new(false);
    rayon::scope(|s| {
        let was = BUSY.with(|b| b.replace(true));
        // one spinner per worker (this one's returns at once)
        s.spawn_broadcast(|_, _| {
            if BUSY.with(|b| b.replace(true)) {
                return;
            }
            let mut idle = 0u32;
            while !done.load(Ordering::Acquire) {
                if rayon::yield_now() == Some(rayon::Yield::Executed) {
                    idle = 0;
                } else {
                    // hand the core over now and then (another process may want it)
                    idle += 1;
                    if idle % 64 == 0 {
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
            }
            BUSY.with(|b| b.set(false));
        });
        // the spinners stop when `f` returns or panics (the scope then waits for them, and
        // hands the panic on: without this a panicking inference hung the process)
        let _stop = StopSpinners { done: &done, was };
        f()
    })
}

/// Ends [`with_hot_workers`]' spinners and restores the calling thread's `BUSY` when dropped,
/// on return and on unwind alike.
struct StopSpinners<'a> {
    done: &'a AtomicBool,
    was: bool,
}

impl Drop for StopSpinners<'_> {
    fn drop(&mut self) {
        BUSY.with(|b| b.set(self.was));
        self.done.store(true, Ordering::Release);
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

    /// A panic inside the inference reaches the caller instead of leaving the spinners
    /// running (the pool's scope would then wait for them forever). Run on a thread with a
    /// deadline, so that a regression fails the test instead of hanging it.
    #[test]
    fn a_panic_in_the_hot_section_reaches_the_caller() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pool = pool(2);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.install(|| {
                    with_hot_workers(|| {
                        for_each(64, 1, &|i| assert!(i != 37, "job 37 fails"));
                    })
                })
            }));
            let _ = tx.send(r.is_err());
        });
        let panicked = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("with_hot_workers hung after a panic");
        assert!(panicked, "the panic was lost");
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

    #[test]
    fn hot_workers_run_nested_loops_and_return() {
        // An inference's shape: many short parallel loops with nested joins inside them; every
        // item must be done once and the call must return (a spinner picked up inside a join
        // would hang it). Which threads take the items depends on the OS's scheduling.
        for threads in [1, 2, 4] {
            let sum = pool(threads).install(|| {
                with_hot_workers(|| {
                    let mut sum = 0u64;
                    for op in 0..200u64 {
                        sum += (0..64u64)
                            .into_par_iter()
                            .map(|i| {
                                let (a, b) = rayon::join(|| i * op, || (0..8u64).sum::<u64>());
                                a + b
                            })
                            .sum::<u64>();
                    }
                    sum
                })
            });
            let want: u64 = (0..200u64)
                .map(|op| (0..64u64).map(|i| i * op + 28).sum::<u64>())
                .sum();
            assert_eq!(sum, want, "{threads} threads");
        }
        // outside a pool's worker it is just the call
        assert_eq!(with_hot_workers(|| 7), 7);
    }
}
