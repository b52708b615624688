//! Sessions freed on the reader's thread, not the worker's.
//!
//! A session's events were made on the thread that decoded them (a reader thread, when
//! the run reads ahead) and are done with on the worker's, after their records are
//! rendered. Freeing them there was a tenth of the worker's time (mimalloc frees
//! another thread's memory through an atomic list); the worker, the run's busiest
//! thread, buries them instead, and the next block's decoding, on the reader's thread,
//! frees them. At most [`MOST_EVENTS`] events wait; past that the worker frees its own.

use std::sync::{Mutex, MutexGuard};

use crate::shard::Session;

/// The most events waiting to be freed (about 200 bytes each).
pub const MOST_EVENTS: usize = 1 << 14;

struct Grave {
    sessions: Vec<Vec<Session>>,
    events: usize,
}

static GRAVE: Mutex<Grave> = Mutex::new(Grave {
    sessions: Vec::new(),
    events: 0,
});

fn grave() -> MutexGuard<'static, Grave> {
    GRAVE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Leaves `sessions` to be freed by the next [`clear`] (or frees them now, when too
/// many wait).
pub fn bury(sessions: Vec<Session>) {
    let n: usize = sessions.iter().map(|s| s.1.len()).sum();
    if n == 0 {
        return;
    }
    let mut g = grave();
    if g.events + n <= MOST_EVENTS {
        g.events += n;
        g.sessions.push(sessions);
    }
    // (else `sessions` is dropped here, after the lock: freed by this thread)
}

/// Frees what waits (on the calling thread).
pub fn clear() {
    let dead = {
        let mut g = grave();
        g.events = 0;
        std::mem::take(&mut g.sessions)
    };
    drop(dead);
}

/// How many events wait.
pub fn waiting() -> usize {
    grave().events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, APP_OPEN};

    fn session(n: usize) -> Session {
        (
            "u".into(),
            vec![Event::plain(0, 0, APP_OPEN, "u"); n],
            "gap",
        )
    }

    #[test]
    fn buries_up_to_the_most_then_frees_at_once() {
        clear();
        bury(vec![session(3), session(2)]);
        assert_eq!(waiting(), 5);
        bury(vec![session(MOST_EVENTS)]); // too many: freed by the caller
        assert_eq!(waiting(), 5);
        clear();
        assert_eq!(waiting(), 0);
    }
}
