//! One writer, many readers that each go at their own pace: the writer never waits, a
//! reader that falls more than `capacity` items behind skips ahead (and learns how many
//! it missed). Used per HTTP client so a stalled client cannot slow anyone else.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

struct State<T> {
    items: VecDeque<(u64, T)>,
    next: u64,
    closed: bool,
}

/// A bounded ring of the latest items with sequence numbers.
pub struct Broadcast<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
    capacity: usize,
}

/// What a reader got.
pub struct Batch<T> {
    /// New items, oldest first, with their sequence numbers.
    pub items: Vec<(u64, T)>,
    /// Items that were overwritten before this reader got them.
    pub missed: u64,
    /// The writer has finished.
    pub closed: bool,
}

impl<T: Clone> Broadcast<T> {
    /// Keep the latest `capacity` items (1: latest-item-wins).
    pub fn new(capacity: usize) -> Self {
        Broadcast {
            state: Mutex::new(State {
                items: VecDeque::new(),
                next: 1,
                closed: false,
            }),
            changed: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add an item; never blocks on readers.
    pub fn push(&self, item: T) {
        let mut s = self.lock();
        let seq = s.next;
        s.next += 1;
        s.items.push_back((seq, item));
        while s.items.len() > self.capacity {
            s.items.pop_front();
        }
        self.changed.notify_all();
    }

    /// The newest item, if any.
    pub fn latest(&self) -> Option<(u64, T)> {
        self.lock().items.back().cloned()
    }

    /// Items after `after` (a sequence number seen before; 0 for none), waiting up to
    /// `timeout` for one.
    pub fn wait_after(&self, after: u64, timeout: Duration) -> Batch<T> {
        let mut s = self.lock();
        if s.next - 1 <= after && !s.closed {
            s = self
                .changed
                .wait_timeout(s, timeout)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let items: Vec<(u64, T)> = s
            .items
            .iter()
            .filter(|(q, _)| *q > after)
            .cloned()
            .collect();
        let first = items.first().map(|(q, _)| *q).unwrap_or(s.next);
        Batch {
            missed: first.saturating_sub(after + 1),
            items,
            closed: s.closed,
        }
    }

    /// Wake every reader for good.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_reader_skips_ahead() {
        let b = Broadcast::new(3);
        for i in 0..10 {
            b.push(i);
        }
        let got = b.wait_after(0, Duration::ZERO);
        assert_eq!(
            got.items.iter().map(|x| x.1).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
        assert_eq!(got.missed, 7);
        let none = b.wait_after(10, Duration::from_millis(1));
        assert!(none.items.is_empty() && none.missed == 0 && !none.closed);
        b.close();
        assert!(b.wait_after(10, Duration::from_secs(5)).closed);
    }
}
