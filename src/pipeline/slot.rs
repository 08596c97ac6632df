//! A one-item mailbox between two threads. `put` replaces an unread item (latest frame
//! wins; the stale one is dropped and counted) or, with `put_wait`, waits until the reader
//! took it (files: every frame is processed).

use std::sync::{Condvar, Mutex};
use std::time::Duration;

struct State<T> {
    item: Option<T>,
    closed: bool,
    dropped: u64,
}

/// Latest-item-wins slot.
pub struct LatestSlot<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
}

impl<T> Default for LatestSlot<T> {
    fn default() -> Self {
        LatestSlot {
            state: Mutex::new(State {
                item: None,
                closed: false,
                dropped: 0,
            }),
            changed: Condvar::new(),
        }
    }
}

/// What `take` found.
#[derive(Debug, PartialEq)]
pub enum Taken<T> {
    /// An item.
    Item(T),
    /// Nothing within the timeout.
    Empty,
    /// The writer closed the slot and it is empty.
    Closed,
}

impl<T> LatestSlot<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Store `item`, dropping an unread one; returns true when one was dropped.
    pub fn put(&self, item: T) -> bool {
        let mut s = self.lock();
        let dropped = s.item.replace(item).is_some();
        if dropped {
            s.dropped += 1;
        }
        self.changed.notify_all();
        dropped
    }

    /// Store `item` once the slot is empty (or closed: then the item is discarded).
    pub fn put_wait(&self, item: T) {
        self.wait_empty();
        let mut s = self.lock();
        if !s.closed {
            s.item = Some(item);
            self.changed.notify_all();
        }
    }

    /// Wait until the reader took the item (or the slot is closed): a file source reads
    /// its next frame only then, so latency does not include time spent queued.
    pub fn wait_empty(&self) {
        let mut s = self.lock();
        while s.item.is_some() && !s.closed {
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Wait up to `timeout` for an item.
    pub fn take(&self, timeout: Duration) -> Taken<T> {
        let mut s = self.lock();
        if s.item.is_none() && !s.closed {
            s = self
                .changed
                .wait_timeout(s, timeout)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        match s.item.take() {
            Some(i) => {
                self.changed.notify_all();
                Taken::Item(i)
            }
            None if s.closed => Taken::Closed,
            None => Taken::Empty,
        }
    }

    /// No more items will come (writer side), or none are wanted (reader side).
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Items replaced before they were read.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn latest_wins_and_drops_are_counted() {
        let s = LatestSlot::default();
        assert!(!s.put(1));
        assert!(s.put(2));
        assert!(s.put(3));
        assert_eq!(s.take(Duration::ZERO), Taken::Item(3));
        assert_eq!(s.dropped(), 2);
        assert_eq!(s.take(Duration::from_millis(1)), Taken::Empty);
        s.close();
        assert_eq!(s.take(Duration::from_secs(5)), Taken::Closed);
    }

    #[test]
    fn put_wait_hands_over_every_item() {
        let s = Arc::new(LatestSlot::default());
        let w = {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    s.put_wait(i);
                }
                s.close();
            })
        };
        let mut got = vec![];
        loop {
            match s.take(Duration::from_secs(5)) {
                Taken::Item(i) => got.push(i),
                Taken::Closed => break,
                Taken::Empty => panic!("writer stalled"),
            }
        }
        w.join().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        assert_eq!(s.dropped(), 0);
    }
}
