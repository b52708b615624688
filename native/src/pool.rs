//! Event vectors used again, block after block.
//!
//! Each block's events are dealt into a vector per shard, sized for the block (about
//! 560 KB at 512 KB blocks), and a shard's ingest empties it. Freed, the next block
//! needs a fresh one: the allocator either keeps the freed pages a while (memory held
//! above what the run needs) or gives them back and faults them in again (a third of
//! a run's page faults, each zeroing a page). An emptied vector goes back here
//! instead, and the next block's dealing takes it, its pages still in place. At most
//! [`MOST_KEPT`] wait, of at most [`MOST_EVENTS`] events' room each.

use std::sync::{Mutex, MutexGuard};

use crate::event::Event;

/// The most vectors kept: as many as go round (one worker's shard: one being dealt
/// into while one is ingested), not more, or the pool would hold memory the allocator
/// could give back.
pub const MOST_KEPT: usize = 2;
/// The largest vector kept, in events (4 MB; a larger one, a huge block's, is freed).
pub const MOST_EVENTS: usize = 1 << 15;

/// A pool of emptied vectors (the run's is [`EVENTS`]).
pub struct Pool(Mutex<Vec<Vec<Event>>>);

/// The pool the dealing takes from and the shards' ingest gives to.
pub static EVENTS: Pool = Pool::new();

impl Pool {
    pub const fn new() -> Pool {
        Pool(Mutex::new(Vec::new()))
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Vec<Event>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An empty vector with room for at least `n` events: a kept one if it has the
    /// room, else a new one with an eighth more (blocks vary a little in events), the
    /// kept one freed (growing it would copy its whole room).
    pub fn take(&self, n: usize) -> Vec<Event> {
        match self.lock().pop() {
            Some(v) if v.capacity() >= n => v,
            _ => Vec::with_capacity(n + n / 8),
        }
    }

    /// Keeps `v` (emptied first) for a later [`Pool::take`], unless too many wait or
    /// it is too large.
    pub fn give(&self, mut v: Vec<Event>) {
        if v.capacity() == 0 || v.capacity() > MOST_EVENTS {
            return;
        }
        v.clear();
        let mut p = self.lock();
        if p.len() < MOST_KEPT {
            p.push(v);
        }
        // (else `v` is dropped here, after the lock)
    }

    /// How many vectors wait.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.lock().len()
    }
}

impl Default for Pool {
    fn default() -> Pool {
        Pool::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::APP_OPEN;

    fn ev() -> Event {
        Event::plain(0, 0, APP_OPEN, "u")
    }

    #[test]
    fn gives_back_emptied_vectors_that_fit() {
        let pool = Pool::new(); // (not the run's: tests run side by side)
        let (take, give, kept) = (|n| pool.take(n), |v| pool.give(v), || pool.kept());
        let mut v = take(100);
        assert!(v.capacity() >= 100);
        v.push(ev());
        give(v);
        assert_eq!(kept(), 1);
        let again = take(50);
        assert!(again.is_empty() && again.capacity() >= 100); // the kept one
        assert_eq!(kept(), 0);
        give(again);
        assert!(take(1000).capacity() >= 1000); // a new one (the kept one freed)
        assert_eq!(kept(), 0);
        give(Vec::with_capacity(MOST_EVENTS + 1)); // too large: freed
        give(Vec::new()); // nothing to keep
        assert_eq!(kept(), 0);
        for _ in 0..MOST_KEPT + 2 {
            give(Vec::with_capacity(10));
        }
        assert_eq!(kept(), MOST_KEPT);
    }
}
