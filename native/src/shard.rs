//! One shard's sessionizing: `core/sessions.py`'s `Sessionizer`, line for line.
//!
//! The same state (each user's pending events, per-user deadlines on a heap, every
//! partition's newest time, the watermark) and the same order of everything that
//! reaches the output: users are emitted in heap order, and at the end of input in
//! the order they first became pending, as a Python dict iterates. The state is
//! snapshotted as bytes ([`Sessionizer::snapshot`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::event::{self, Event, Text, APP_CLOSE, APP_OPEN};
use crate::py::{events_from_py, late_from_py, pair_list, rules_from_py};
use crate::records::{self, Emitted, Rules};

/// Why a session ended, as the records name it.
pub const REASONS: [&str; 5] = [
    "gap",
    "app_close",
    "app_open",
    "max_session",
    "end_of_input",
];

/// A time before every event (`NEVER`) and after every event (`FOREVER`).
pub const NEVER: i64 = -(1 << 62);
pub const FOREVER: i64 = 1 << 62;

/// The `'static` name of an end reason given as text.
pub fn reason_name(reason: &str) -> PyResult<&'static str> {
    REASONS
        .iter()
        .find(|r| **r == reason)
        .copied()
        .ok_or_else(|| PyValueError::new_err(format!("not an end reason: {reason:?}")))
}

/// A session the watermark made final: `(user, events, end_reason)`.
pub type Session = (Text, Vec<Event>, &'static str);

/// A cut: `events[start..stop]` is a session; the reason is `None` for the last one.
type Cut = (usize, usize, Option<&'static str>);

/// One user's events not yet emitted, and when the user may next have a session to emit.
#[derive(Serialize, Deserialize)]
struct Pending {
    events: Vec<Event>,
    deadline: i64,
    /// When the user became pending (a Python dict's insertion order).
    order: u64,
}

/// The state and logic of one shard (see the module's doc).
#[derive(Serialize, Deserialize)]
pub struct Sessionizer {
    gap_us: i64,
    lateness_us: i64,
    max_session_us: i64,
    newest: Vec<i64>,
    closed: Vec<bool>,
    idle_us: Vec<i64>,
    pub watermark: i64,
    pending: FxHashMap<Text, Pending>,
    heap: BinaryHeap<Reverse<(i64, Text)>>,
    next_order: u64,
    pub duplicates: i64,
    pub late: i64,
    /// Sessions, searches, clicked searches and clicks emitted.
    pub counters: [i64; 4],
}

/// A snapshot's first bytes: a Python core's snapshot (a pickle) cannot be read here.
const SNAPSHOT_MAGIC: &[u8] = b"search-sessions native shard 1\n";

impl Sessionizer {
    pub fn new(n_parts: usize, gap_us: i64, lateness_us: i64, max_session_us: i64) -> Self {
        Sessionizer {
            gap_us,
            lateness_us,
            max_session_us,
            newest: vec![NEVER; n_parts],
            closed: vec![false; n_parts],
            idle_us: vec![-1; n_parts],
            watermark: NEVER,
            pending: FxHashMap::default(),
            heap: BinaryHeap::new(),
            next_order: 0,
            duplicates: 0,
            late: 0,
            counters: [0; 4],
        }
    }

    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = SNAPSHOT_MAGIC.to_vec();
        out.extend(event::pack(self));
        out
    }

    pub fn restore(data: &[u8]) -> Result<Sessionizer, String> {
        match data.strip_prefix(SNAPSHOT_MAGIC) {
            Some(rest) => event::unpack(rest),
            None => Err("the recovery store holds another core's shard state: resume with the \
                 core that wrote it (SEARCH_SESSIONS_CORE), or start again with a new --recovery-dir"
                .to_owned()),
        }
    }

    pub fn newest_time(&self) -> i64 {
        self.newest.iter().copied().max().unwrap_or(NEVER)
    }

    pub fn all_closed(&self) -> bool {
        self.closed.iter().all(|c| *c)
    }

    pub fn pending_users(&self) -> usize {
        self.pending.len()
    }

    /// One partition's events for this shard and its progress; returns the late events,
    /// each with the watermark it missed (`Sessionizer.ingest`).
    pub fn ingest(
        &mut self,
        part: usize,
        newest: i64,
        closed: bool,
        mut events: Vec<Event>,
        maybe_late: Vec<(Event, i64)>,
        idle_us: i64,
    ) -> Result<Vec<(Event, i64)>, String> {
        if part >= self.newest.len() {
            return Err(format!("partition {part} of {}", self.newest.len()));
        }
        let mut late = Vec::new();
        for (ev, newest_before) in maybe_late {
            let wm = self.watermark_for(part, newest_before);
            if ev.t < wm {
                late.push((ev, wm));
            } else {
                events.push(ev);
            }
        }
        let gap = self.gap_us.min(self.max_session_us);
        for ev in events.drain(..) {
            let wait = if ev.kind == APP_OPEN || ev.kind == APP_CLOSE {
                0
            } else {
                gap
            };
            let due = ev.t.saturating_add(wait);
            match self.pending.get_mut(&ev.user) {
                None => {
                    self.heap.push(Reverse((due, ev.user.clone())));
                    let order = self.next_order;
                    self.next_order += 1;
                    self.pending.insert(
                        ev.user.clone(),
                        Pending {
                            events: vec![ev],
                            deadline: due,
                            order,
                        },
                    );
                }
                Some(p) => {
                    if due < p.deadline {
                        p.deadline = due;
                        self.heap.push(Reverse((due, ev.user.clone())));
                    }
                    p.events.push(ev);
                }
            }
        }
        crate::pool::EVENTS.give(events); // (for the next block's dealing)
        self.late += late.len() as i64;
        if newest > self.newest[part] {
            self.newest[part] = newest;
        }
        if closed {
            self.closed[part] = true;
        }
        self.idle_us[part] = idle_us;
        self.update_watermark();
        Ok(late)
    }

    fn watermark_for(&self, part: usize, newest_before: i64) -> i64 {
        let mut low = newest_before;
        for (q, t) in self.newest.iter().enumerate() {
            if q != part && !self.closed[q] && self.idle_us[q] < 0 && *t < low {
                low = *t;
            }
        }
        if low != NEVER {
            low - self.lateness_us
        } else {
            NEVER
        }
    }

    fn update_watermark(&mut self) {
        let open: Vec<usize> = (0..self.closed.len())
            .filter(|p| !self.closed[*p])
            .collect();
        if open.is_empty() {
            self.watermark = FOREVER;
            return;
        }
        let active = open
            .iter()
            .filter(|p| self.idle_us[**p] < 0)
            .map(|p| self.newest[*p])
            .min();
        let wm = match active {
            Some(low) if low != NEVER => low - self.lateness_us,
            Some(_) => NEVER,
            None => {
                let newest = self.newest_time();
                let silence = open.iter().map(|p| self.idle_us[*p]).min().unwrap_or(0);
                if newest != NEVER {
                    newest - self.lateness_us + silence
                } else {
                    NEVER
                }
            }
        };
        if wm > self.watermark {
            self.watermark = wm;
        }
    }

    /// Every session the watermark has made final.
    pub fn advance(&mut self) -> Vec<Session> {
        let wm = self.watermark;
        if wm == FOREVER {
            return self.flush();
        }
        let mut out = Vec::new();
        while let Some(Reverse((due, _))) = self.heap.peek() {
            if *due >= wm {
                break;
            }
            let Some(Reverse((due, user))) = self.heap.pop() else {
                break;
            };
            if self.pending.get(&user).map(|p| p.deadline) != Some(due) {
                continue;
            }
            self.emit_user(&user, wm, &mut out, false);
        }
        out
    }

    /// End of input: every pending session, users in the order they became pending.
    pub fn flush(&mut self) -> Vec<Session> {
        let mut users: Vec<(u64, Text)> = self
            .pending
            .iter()
            .map(|(u, p)| (p.order, u.clone()))
            .collect();
        users.sort_unstable();
        let mut out = Vec::new();
        for (_, user) in users {
            self.emit_user(&user, FOREVER, &mut out, true);
        }
        self.heap.clear();
        out
    }

    fn emit_user(&mut self, user: &str, wm: i64, out: &mut Vec<Session>, last: bool) {
        let (gap_us, max_us) = (self.gap_us, self.max_session_us);
        let end_of_input = self.newest_time() - self.lateness_us;
        let Some(p) = self.pending.get_mut(user) else {
            return;
        };
        let mut evs = std::mem::take(&mut p.events);
        evs.sort_by(|a, b| a.order(b));
        let (mut cuts, ties) = cut(&evs, gap_us, max_us);
        if ties {
            let dups = dedup_sorted(&mut evs);
            if dups > 0 {
                self.duplicates += dups as i64;
                cuts = cut(&evs, gap_us, max_us).0;
            }
        }
        let mut keep_from = evs.len();
        let mut next_due = FOREVER;
        let mut done: Vec<(usize, usize, &'static str)> = Vec::new();
        for (start, stop, reason) in cuts {
            let last_ev = &evs[stop - 1];
            let start_t = evs[start].t;
            let (due, reason) = if last_ev.kind == APP_CLOSE {
                (last_ev.t, reason.unwrap_or("app_close"))
            } else {
                let (due, open_reason) = open_end(last_ev.t, start_t, gap_us, max_us);
                match reason {
                    Some(r) => (due.min(evs[stop].t), r),
                    None if last && due >= end_of_input => (due, "end_of_input"),
                    None => (due, open_reason),
                }
            };
            if due < wm {
                done.push((start, stop, reason));
            } else {
                keep_from = start;
                next_due = due;
                break;
            }
        }
        // Sessions that start at the instant the first one kept starts (ended there by
        // app_close or app_open) wait for it: emitted together, their ids count them
        // apart (`session_id_for`'s ordinal), whatever the batches.
        while let Some(&(start, _, _)) = done.last() {
            if keep_from == evs.len() || evs[start].t != evs[keep_from].t {
                break;
            }
            keep_from = start;
            done.pop();
        }
        let rest = evs.split_off(keep_from);
        let mut mine = Vec::with_capacity(done.len());
        for (start, stop, reason) in done.into_iter().rev() {
            let events = evs.split_off(start);
            debug_assert_eq!(events.len(), stop - start);
            mine.push((Text::from(user), events, reason));
        }
        out.extend(mine.into_iter().rev());
        if rest.is_empty() {
            self.pending.remove(user);
        } else if let Some(p) = self.pending.get_mut(user) {
            p.events = rest;
            p.deadline = next_due;
            self.heap.push(Reverse((next_due, Text::from(user))));
        }
    }
}

/// When an open session ends if nothing follows it, and why.
fn open_end(last_t: i64, start_t: i64, gap_us: i64, max_session_us: i64) -> (i64, &'static str) {
    let by_gap = last_t.saturating_add(gap_us);
    let by_max = start_t.saturating_add(max_session_us);
    if by_max < by_gap {
        (by_max, "max_session")
    } else {
        (by_gap, "gap")
    }
}

/// Splits one user's sorted events into sessions (`_cut`), and says whether two
/// events share a time (so may be duplicates).
fn cut(events: &[Event], gap_us: i64, max_session_us: i64) -> (Vec<Cut>, bool) {
    let mut cuts = Vec::new();
    let mut start = 0;
    let mut start_t = events[0].t;
    let mut prev = 0;
    let mut ties = false;
    for i in 1..events.len() {
        let t = events[i].t;
        let prev_t = events[prev].t;
        if t == prev_t {
            ties = true;
        }
        let reason = if events[prev].kind == APP_CLOSE {
            "app_close"
        } else if t - prev_t > gap_us || t - start_t > max_session_us {
            let by_max = t - start_t > max_session_us
                && (t - prev_t <= gap_us
                    || start_t.saturating_add(max_session_us) < prev_t.saturating_add(gap_us));
            if by_max {
                "max_session"
            } else {
                "gap"
            }
        } else if events[i].kind == APP_OPEN {
            "app_open"
        } else {
            prev = i;
            continue;
        };
        cuts.push((start, i, Some(reason)));
        start = i;
        start_t = t;
        prev = i;
    }
    cuts.push((start, events.len(), None));
    (cuts, ties)
}

/// Drops exact duplicates from sorted events, keeping the first copy; how many went.
fn dedup_sorted(events: &mut Vec<Event>) -> usize {
    let before = events.len();
    let mut out: Vec<Event> = Vec::with_capacity(before);
    let mut run_start = 0;
    for ev in events.drain(..) {
        if out.last().map(|l| l.t) != Some(ev.t) {
            run_start = out.len();
            out.push(ev);
        } else if !out[run_start..].iter().any(|k| k.same_record(&ev)) {
            out.push(ev);
        }
    }
    *events = out;
    before - events.len()
}

// Python --------------------------------------------------------------------------

/// A shard for the flow: a [`Sessionizer`] and the rules its records follow.
#[pyclass(module = "search_sessions_native")]
pub struct Shard {
    core: Sessionizer,
    rules: Rules,
    /// The searches' and sessions' lines of the last batch, kept for their capacity (a
    /// buffer grown again for every batch cost reallocations and glibc's consolidations).
    lines: (Vec<u8>, Vec<u8>),
}

/// The most buffer capacity a shard keeps between batches.
const KEPT_LINES: usize = 4 << 20;

type Rendered<'py> = (
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Option<Vec<i64>>,
    usize,
);

impl Shard {
    /// Renders what the core emitted (`emit`: advance or flush) into JSON lines, without
    /// the GIL, then hands them to Python.
    fn rendered<'py>(
        &mut self,
        py: Python<'py>,
        emit: fn(&mut Sessionizer) -> Vec<Session>,
        with_times: bool,
    ) -> Rendered<'py> {
        let (core, rules) = (&mut self.core, &self.rules);
        let (searches, sessions) = &mut self.lines;
        searches.clear();
        sessions.clear();
        let (times, n) = py.allow_threads(|| {
            let emitted = emit(core);
            let mut times = Vec::new();
            let n = emitted.len();
            if n > 0 {
                let list = Emitted::of(&emitted);
                let times_ref = if with_times { Some(&mut times) } else { None };
                records::render(
                    &list,
                    rules,
                    &mut core.counters,
                    searches,
                    sessions,
                    times_ref,
                );
            }
            crate::grave::bury(emitted); // (freed by the next block's decoding)
            (times, n)
        });
        let out = (
            PyBytes::new(py, searches),
            PyBytes::new(py, sessions),
            with_times.then_some(times),
            n,
        );
        for buf in [searches, sessions] {
            if buf.capacity() > KEPT_LINES {
                *buf = Vec::new(); // (an end of input's flush: not kept)
            }
        }
        out
    }
}

#[pymethods]
impl Shard {
    #[new]
    #[pyo3(signature = (n_parts, gap_us, lateness_us, max_session_us, long_click_us, short_click_us, typeahead_us, dimensions, snapshot=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        n_parts: usize,
        gap_us: i64,
        lateness_us: i64,
        max_session_us: i64,
        long_click_us: i64,
        short_click_us: i64,
        typeahead_us: Option<i64>,
        dimensions: Vec<String>,
        snapshot: Option<&[u8]>,
    ) -> PyResult<Shard> {
        let core = match snapshot {
            Some(data) if !data.is_empty() => {
                Sessionizer::restore(data).map_err(PyValueError::new_err)?
            }
            _ => Sessionizer::new(n_parts, gap_us, lateness_us, max_session_us),
        };
        let rules = rules_from_py(long_click_us, short_click_us, typeahead_us, dimensions);
        Ok(Shard {
            core,
            rules,
            lines: (Vec::new(), Vec::new()),
        })
    }

    /// `Sessionizer.ingest`: the events a list of tuples or a packed block; returns the
    /// late events as `(event tuple, watermark)`.
    #[pyo3(signature = (part, newest, closed, events, maybe_late, idle_us=-1))]
    #[allow(clippy::too_many_arguments)]
    fn ingest<'py>(
        &mut self,
        py: Python<'py>,
        part: usize,
        newest: i64,
        closed: bool,
        events: &Bound<'py, PyAny>,
        maybe_late: &Bound<'py, PyAny>,
        idle_us: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        let evs = events_from_py(events)?;
        let maybe = late_from_py(maybe_late)?;
        let core = &mut self.core;
        let late = py
            .allow_threads(|| core.ingest(part, newest, closed, evs, maybe, idle_us))
            .map_err(PyValueError::new_err)?;
        pair_list(py, &late)
    }

    /// The sessions the watermark made final, as `(search lines, session lines, the
    /// searches' times or None, sessions)`.
    #[pyo3(signature = (with_times=false))]
    fn advance<'py>(&mut self, py: Python<'py>, with_times: bool) -> Rendered<'py> {
        self.rendered(py, Sessionizer::advance, with_times)
    }

    /// End of input: every pending session, as [`Shard::advance`].
    #[pyo3(signature = (with_times=false))]
    fn flush<'py>(&mut self, py: Python<'py>, with_times: bool) -> Rendered<'py> {
        self.rendered(py, Sessionizer::flush, with_times)
    }

    /// The state as bytes (give them back as `snapshot=` to resume).
    fn snapshot<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.core.snapshot())
    }

    #[getter]
    fn watermark(&self) -> i64 {
        self.core.watermark
    }

    #[getter]
    fn all_closed(&self) -> bool {
        self.core.all_closed()
    }

    #[getter]
    fn open_users(&self) -> usize {
        self.core.pending_users()
    }

    #[getter]
    fn duplicates(&self) -> i64 {
        self.core.duplicates
    }

    #[getter]
    fn late(&self) -> i64 {
        self.core.late
    }

    #[getter]
    fn counters(&self) -> [i64; 4] {
        self.core.counters
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Shard>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{CLICK, SEARCH};

    fn ev(t: i64, seq: i64, kind: u8, user: &str) -> Event {
        Event::plain(t, seq, kind, user)
    }

    #[test]
    fn emits_a_session_once_the_watermark_passes_its_gap() {
        let mut s = Sessionizer::new(1, 10, 0, 100);
        let evs = vec![ev(0, 1, SEARCH, "u"), ev(5, 2, 3, "u")];
        s.ingest(0, 5, false, evs, vec![], -1).unwrap();
        assert!(s.advance().is_empty());
        s.ingest(0, 40, false, vec![], vec![], -1).unwrap();
        let out = s.advance();
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].1.len(), out[0].2), (2, "gap"));
    }

    #[test]
    fn cuts_at_app_open_and_after_app_close_and_drops_duplicates() {
        let mut s = Sessionizer::new(1, 1000, 0, 10_000);
        let evs = vec![
            ev(0, 1, SEARCH, "u"),
            ev(1, 2, APP_CLOSE, "u"),
            ev(2, 3, SEARCH, "u"),
            ev(2, 4, SEARCH, "u"),
            ev(3, 5, APP_OPEN, "u"),
        ];
        s.ingest(0, 3, true, evs, vec![], -1).unwrap();
        let out = s.advance();
        let got: Vec<(usize, &str)> = out.iter().map(|(_, e, r)| (e.len(), *r)).collect();
        assert_eq!(
            got,
            vec![(2, "app_close"), (1, "app_open"), (1, "end_of_input")]
        );
        assert_eq!(s.duplicates, 1);
    }

    #[test]
    fn sessions_starting_at_one_instant_are_emitted_together() {
        // An app_close alone at 10 ends a session the watermark passes at 11; the click
        // at 10 after it starts one that ends by the gap: the first waits for it.
        let mut s = Sessionizer::new(1, 100, 0, 10_000);
        let evs = vec![ev(10, 1, APP_CLOSE, "u"), ev(10, 2, CLICK, "u")];
        s.ingest(0, 10, false, evs, vec![], -1).unwrap();
        s.ingest(0, 50, false, vec![], vec![], -1).unwrap();
        assert!(s.advance().is_empty());
        s.ingest(0, 200, false, vec![], vec![], -1).unwrap();
        let out = s.advance();
        let got: Vec<(usize, &str)> = out.iter().map(|(_, e, r)| (e.len(), *r)).collect();
        assert_eq!(got, vec![(1, "app_close"), (1, "gap")]);
    }

    #[test]
    fn snapshots_round_trip_and_refuse_other_bytes() {
        let mut s = Sessionizer::new(2, 10, 0, 100);
        s.ingest(1, 5, false, vec![ev(5, 1, SEARCH, "u")], vec![], -1)
            .unwrap();
        let back = Sessionizer::restore(&s.snapshot()).unwrap();
        assert_eq!(back.pending_users(), 1);
        assert!(Sessionizer::restore(b"\x80\x05pickle").is_err());
    }
}
