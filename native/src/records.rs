//! Per-search and per-session records (`core/searches.py`), encoded as the Python
//! core's msgspec encoder writes them (`SearchRecord`, `SessionRecord` in
//! `core/schema.py`): byte for byte the same JSON lines.
//!
//! The port keeps the Python core's shape: [`intents`] is `_intents`, [`Attach`]
//! is `_attach` (with `_later`, `_converted_search`, `_add_click`, ...), and the
//! writers are `_search_records` and `session_records` followed by msgspec. Where
//! the Python core would raise (an event tuple it never makes: an empty session, a
//! search without a query, dimensions of the wrong length), this port writes
//! something rather than panic; the Python core's decoder never makes such events.

use blake2::digest::{Update, VariableOutput};
use blake2::Blake2bVar;
use rustc_hash::FxHashMap;

use crate::event::{Dim, Event, Payload, Text, CLICK, CONVERSION, RESULTS, SEARCH};
use crate::json;

/// `Rules` of `core/searches.py`.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    pub long_click_us: i64,
    pub short_click_us: i64,
    pub typeahead_us: Option<i64>,
    pub dimensions: Vec<String>,
}

/// One emitted session: `(user, events, end_reason)` (`EmittedSession`).
pub struct Emitted<'a> {
    pub user: &'a str,
    pub events: &'a [Event],
    pub reason: &'static str,
}

impl<'a> Emitted<'a> {
    /// Borrowed views of owned `(user, events, end_reason)` sessions.
    pub fn of(sessions: &'a [(Text, Vec<Event>, &'static str)]) -> Vec<Emitted<'a>> {
        sessions
            .iter()
            .map(|(user, events, reason)| Emitted {
                user,
                events,
                reason,
            })
            .collect()
    }
}

/// `render` of `core/searches.py`: appends each session's search records to
/// `searches` and its session record to `sessions` (one JSON object per line, as
/// `msgspec.json.Encoder().encode_lines`), adds to `counts` (sessions, searches,
/// clicked searches, clicks) and, when given, to `times` each search record's time.
///
/// `ordinal` tells apart sessions of one user that start at the same instant, counted
/// within this call as the Python core does. A session without events (which the
/// Python core never emits) writes nothing.
pub fn render(
    emitted: &[Emitted],
    rules: &Rules,
    counts: &mut [i64; 4],
    searches: &mut Vec<u8>,
    sessions: &mut Vec<u8>,
    mut times: Option<&mut Vec<i64>>,
) {
    let mut seen: FxHashMap<(&str, i64), u64> = FxHashMap::default();
    for em in emitted {
        let Some(first) = em.events.first() else {
            continue;
        };
        let ordinal = seen.entry((em.user, first.t)).or_insert(0);
        let id = session_id_hex(em.user, first.t, *ordinal);
        // (Hex digits: ASCII.)
        let session_id = std::str::from_utf8(&id).unwrap_or_default();
        *ordinal += 1;
        let attached = Attach::run(em.events, rules);
        if let Some(times) = times.as_deref_mut() {
            times.extend(attached.searches.iter().map(|&s| attached.arena[s].t));
        }
        let clicked = write_searches(searches, &attached, session_id, em.user, rules);
        write_session(sessions, em, &attached, session_id, clicked, rules);
        counts[0] += 1;
        counts[1] += attached.searches.len() as i64;
        counts[2] += clicked;
        counts[3] += attached.clicks;
    }
}

/// `session_id_for`: the first 8 bytes' worth of BLAKE2b (digest size 8, as
/// `hashlib.blake2b(digest_size=8)`, not a truncated 64-byte digest) of
/// `s\x1f{user}\x1f{start_us}\x1f{ordinal}`, in hex.
pub fn session_id_for(user: &str, start_us: i64, ordinal: u64) -> String {
    String::from_utf8_lossy(&session_id_hex(user, start_us, ordinal)).into_owned()
}

/// [`session_id_for`]'s hex digits, made without an allocation (one a session, and
/// the text hashed fed in pieces: the same digest as the text whole).
fn session_id_hex(user: &str, start_us: i64, ordinal: u64) -> [u8; 16] {
    let mut digest = [0u8; 8];
    if let Ok(mut hasher) = Blake2bVar::new(digest.len()) {
        hasher.update(b"s\x1f");
        hasher.update(user.as_bytes());
        hasher.update(b"\x1f");
        hasher.update(itoa::Buffer::new().format(start_us).as_bytes());
        hasher.update(b"\x1f");
        hasher.update(itoa::Buffer::new().format(ordinal).as_bytes());
        // Cannot fail: the buffer has the size the hasher was made with.
        let _ = hasher.finalize_variable(&mut digest);
    }
    let mut out = [0u8; 16];
    for (i, b) in digest.into_iter().enumerate() {
        out[2 * i] = b"0123456789abcdef"[(b >> 4) as usize];
        out[2 * i + 1] = b"0123456789abcdef"[(b & 0xf) as usize];
    }
    out
}

// Working state ----------------------------------------------------------------------

/// One search's (intent's) working state, the Python core's `_state` list.
struct Search<'a> {
    /// The (first request's) time, the record's `time`.
    t: i64,
    /// The (last request's) query and search id.
    query: Option<&'a str>,
    sid: Option<&'a str>,
    /// The latest results shown.
    items: Option<&'a [Text]>,
    clicks: i64,
    first_t: Option<i64>,
    first_rank: Option<u64>,
    long: bool,
    /// The last request's time: time to first click counts from it.
    last_t: i64,
    keys: i64,
    short: bool,
    conversions: i64,
    values: Vec<f64>,
    /// The latest value of each dimension at the (last) search event.
    dims: Vec<Option<&'a Dim>>,
}

impl<'a> Search<'a> {
    fn new(ev: &'a Event) -> Search<'a> {
        Search {
            t: ev.t,
            query: text(ev),
            sid: ev.search_id.as_deref(),
            items: None,
            clicks: 0,
            first_t: None,
            first_rank: None,
            long: false,
            last_t: ev.t,
            keys: 1,
            short: false,
            conversions: 0,
            values: Vec::new(),
            dims: Vec::new(),
        }
    }
}

/// A search's query or a click's item.
fn text(ev: &Event) -> Option<&str> {
    match &ev.payload {
        Payload::Text(s) => Some(s),
        _ => None,
    }
}

/// Each search event's state (an index into `arena`) when requests collapse
/// (`_intents`): the requests of one intent share theirs, which holds the first
/// request's time and the last one's query, id and time. Without collapse, nothing:
/// states are made on use.
fn intents<'a>(
    events: &'a [Event],
    typeahead_us: Option<i64>,
    arena: &mut Vec<Search<'a>>,
    states: &mut [Option<usize>],
) {
    let Some(window) = typeahead_us else {
        return;
    };
    let mut prev: Option<usize> = None;
    let mut prev_q = String::new();
    let mut prev_t = 0i64;
    for (i, ev) in events.iter().enumerate() {
        if ev.kind != SEARCH {
            if ev.kind == CLICK || ev.kind == CONVERSION {
                prev = None;
            }
            continue;
        }
        let q = typing_key(text(ev).unwrap_or(""));
        let near = i128::from(ev.t) - i128::from(prev_t) <= i128::from(window);
        match prev {
            Some(p) if near && continues_typing(&q, &prev_q) => {
                let state = &mut arena[p];
                state.query = text(ev);
                state.sid = ev.search_id.as_deref();
                state.last_t = ev.t;
                state.keys += 1;
                states[i] = Some(p);
            }
            _ => {
                arena.push(Search::new(ev));
                prev = Some(arena.len() - 1);
                states[i] = prev;
            }
        }
        prev_q = q;
        prev_t = ev.t;
    }
}

/// `q.strip().lower()` with Python's meanings: `str.strip` strips what `str.isspace`
/// calls space, which is Unicode's White_Space (Rust's `char::is_whitespace`) and
/// also the separators U+001C to U+001F; `str.lower` is the full lower-case mapping
/// with the final-sigma rule, as `str::to_lowercase` (see [`py_lower`]).
pub fn typing_key(q: &str) -> String {
    py_lower(q.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)))
}

/// `str.lower` of the Python core's CPython (3.11 and 3.12: the same mappings, of
/// Unicode 14 and 15) by Rust's lower-casing (a later Unicode, with the same
/// final-sigma rule). They differ only on the capitals Unicode 16 and 17 added
/// ([`NEWER_CAPITALS`]), which Python leaves as they are: each is lower-cased here
/// as U+E000 (private use: neither cased nor case-ignorable, in both Unicodes, so a
/// final sigma next to it reads as Python reads it) and put back afterwards.
pub fn py_lower(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    if !s.chars().any(is_newer_capital) {
        return s.to_lowercase();
    }
    const HOLE: char = '\u{e000}';
    let held: Vec<char> = s
        .chars()
        .filter(|&c| c == HOLE || is_newer_capital(c))
        .collect();
    let masked: String = s
        .chars()
        .map(|c| if is_newer_capital(c) { HOLE } else { c })
        .collect();
    let mut held = held.into_iter();
    masked
        .to_lowercase()
        .chars()
        .map(|c| {
            if c == HOLE {
                held.next().unwrap_or(HOLE)
            } else {
                c
            }
        })
        .collect()
}

/// The capitals (as ranges) whose lower-case mapping Rust has and CPython 3.11 and
/// 3.12 lack, found by comparing `str.lower` with
/// [`py_lower`] over every code point (`tests/test_native_records.py`).
const NEWER_CAPITALS: [(char, char); 9] = [
    ('\u{1c89}', '\u{1c89}'),
    ('\u{a7cb}', '\u{a7cc}'),
    ('\u{a7ce}', '\u{a7ce}'),
    ('\u{a7d2}', '\u{a7d2}'),
    ('\u{a7d4}', '\u{a7d4}'),
    ('\u{a7da}', '\u{a7da}'),
    ('\u{a7dc}', '\u{a7dc}'),
    ('\u{10d50}', '\u{10d65}'),
    ('\u{16ea0}', '\u{16eb8}'),
];

fn is_newer_capital(c: char) -> bool {
    c >= '\u{1c89}'
        && NEWER_CAPITALS
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// `continues_typing`: whether `q` continues `prev` as typing does: it starts with
/// it, or is one insertion, deletion or substitution away from it (by code point, as
/// Python indexes text).
pub fn continues_typing(q: &str, prev: &str) -> bool {
    if q.starts_with(prev) {
        return true; // UTF-8 is prefix-free: a byte prefix here is a code-point prefix
    }
    let q: Vec<char> = q.chars().collect();
    let prev: Vec<char> = prev.chars().collect();
    let (n, m) = (q.len(), prev.len());
    if n.abs_diff(m) > 1 {
        return false;
    }
    let i = q.iter().zip(&prev).take_while(|(a, b)| a == b).count();
    let (a, b) = match n.cmp(&m) {
        std::cmp::Ordering::Equal => (i + 1, i + 1),
        std::cmp::Ordering::Greater => (i + 1, i),
        std::cmp::Ordering::Less => (i, i + 1),
    };
    // Python's slices past the end are empty.
    q.get(a..).unwrap_or(&[]) == prev.get(b..).unwrap_or(&[])
}

// Attaching events to searches -------------------------------------------------------

/// `_attach`: the session's searches (intents) in order, with their results, clicks
/// and conversions attached; and the session's totals.
struct Attach<'a> {
    events: &'a [Event],
    arena: Vec<Search<'a>>,
    /// Each search event's state, by event index (made on use without collapse).
    states: Vec<Option<usize>>,
    /// The session's searches, in order (indexes into `arena`).
    searches: Vec<usize>,
    /// `search_id` -> the latest such search so far.
    seen_ids: FxHashMap<&'a str, usize>,
    current: Option<usize>,
    clicks: i64,
    conversions: i64,
    values: Vec<f64>,
    success_t: Option<i64>,
    /// The first value of each dimension (`None` without `--dimension`).
    first: Option<Vec<Option<&'a Dim>>>,
    latest: Vec<Option<&'a Dim>>,
}

impl<'a> Attach<'a> {
    fn run(events: &'a [Event], rules: &Rules) -> Attach<'a> {
        let n_dims = rules.dimensions.len();
        let mut a = Attach {
            events,
            arena: Vec::new(),
            states: vec![None; events.len()],
            searches: Vec::new(),
            seen_ids: FxHashMap::default(),
            current: None,
            clicks: 0,
            conversions: 0,
            values: Vec::new(),
            success_t: None,
            first: (n_dims > 0).then(|| vec![None; n_dims]),
            latest: vec![None; n_dims],
        };
        intents(events, rules.typeahead_us, &mut a.arena, &mut a.states);
        // The previous event's time, if it was a click, and the search it went to.
        let mut click: Option<(i64, Option<usize>)> = None;
        for (i, ev) in events.iter().enumerate() {
            if let Some((click_t, target)) = click.take() {
                a.dwell(ev.t, click_t, target, rules);
            }
            if n_dims > 0 {
                a.note_dimensions(ev);
            }
            match ev.kind {
                SEARCH => a.search(i, ev, n_dims > 0),
                CONVERSION => a.conversion(i, ev),
                CLICK | RESULTS => {
                    let target = match ev.search_id.as_deref() {
                        None => a.current,
                        Some(sid) => a.by_id(i, sid),
                    };
                    if ev.kind == RESULTS {
                        if let (Some(s), Payload::Items(items)) = (target, &ev.payload) {
                            a.arena[s].items = Some(items);
                        } else if let Some(s) = target {
                            a.arena[s].items = None;
                        }
                    } else {
                        a.clicks += 1;
                        click = Some((ev.t, target));
                        if let Some(s) = target {
                            a.add_click(s, ev);
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some((click_t, target)) = click {
            // The session's last event is a click: its dwell has no end, a long one.
            if let Some(s) = target {
                a.arena[s].long = true;
            }
            a.success_t.get_or_insert(click_t);
        }
        a
    }

    /// The dwell after a click on `target` at `click_t`, ended by an event at `t`:
    /// a long click is a success; a short one marks the search.
    fn dwell(&mut self, t: i64, click_t: i64, target: Option<usize>, rules: &Rules) {
        let dwell = i128::from(t) - i128::from(click_t);
        if dwell >= i128::from(rules.long_click_us) {
            if let Some(s) = target {
                self.arena[s].long = true;
            }
            self.success_t.get_or_insert(click_t);
        } else if dwell < i128::from(rules.short_click_us) {
            if let Some(s) = target {
                self.arena[s].short = true;
            }
        }
    }

    /// `_note_dimensions`: the session's latest and first value of each dimension.
    fn note_dimensions(&mut self, ev: &'a Event) {
        let (Some(dims), Some(first)) = (&ev.dims, &mut self.first) else {
            return;
        };
        for ((v, latest), first) in dims.iter().zip(&mut self.latest).zip(first) {
            if !matches!(v, Dim::Null) {
                *latest = Some(v);
                first.get_or_insert(v);
            }
        }
    }

    /// A search event: its intent's state, a new search unless it continues the
    /// current one (typeahead), its dimensions, and its id.
    fn search(&mut self, i: usize, ev: &'a Event, with_dims: bool) {
        let state = self.state_at(i);
        if self.current != Some(state) {
            self.searches.push(state);
            self.current = Some(state);
        }
        if with_dims {
            self.arena[state].dims.clone_from(&self.latest);
        }
        if let Some(sid) = ev.search_id.as_deref() {
            self.seen_ids.insert(sid, state);
        }
    }

    /// The state of the search event at `i`, made if it has none yet.
    fn state_at(&mut self, i: usize) -> usize {
        if let Some(s) = self.states[i] {
            return s;
        }
        self.arena.push(Search::new(&self.events[i]));
        let s = self.arena.len() - 1;
        self.states[i] = Some(s);
        s
    }

    /// The search an event with id `sid` at `i` goes to: the latest such search so
    /// far, else (`_later`) the first search event after it with that id.
    fn by_id(&mut self, i: usize, sid: &str) -> Option<usize> {
        if let Some(&s) = self.seen_ids.get(sid) {
            return Some(s);
        }
        let events = self.events;
        let j = (i + 1..events.len())
            .find(|&j| events[j].kind == SEARCH && events[j].search_id.as_deref() == Some(sid))?;
        Some(self.state_at(j))
    }

    /// A conversion: the session's totals, and the search it goes to (by id, else
    /// `_converted_search`).
    fn conversion(&mut self, i: usize, ev: &'a Event) {
        let (item, value) = match &ev.payload {
            Payload::Conversion(c) => (c.item.as_deref(), c.value),
            _ => (None, None),
        };
        self.conversions += 1;
        if let Some(v) = value {
            self.values.push(v);
        }
        self.success_t.get_or_insert(ev.t);
        let target = match ev.search_id.as_deref() {
            Some(sid) => self.by_id(i, sid),
            None => self.converted_search(item),
        };
        if let Some(s) = target {
            let state = &mut self.arena[s];
            state.conversions += 1;
            if let Some(v) = value {
                state.values.push(v);
            }
        }
    }

    /// `_converted_search`: the latest search whose latest results held `item`;
    /// without an item, the latest search.
    fn converted_search(&self, item: Option<&str>) -> Option<usize> {
        let Some(item) = item else {
            return self.current;
        };
        self.searches.iter().rev().copied().find(|&s| {
            self.arena[s]
                .items
                .is_some_and(|items| items.iter().any(|x| x == item))
        })
    }

    /// `_add_click`: its first click sets the search's time and rank (the click's own
    /// `rank`, else its item's place in the results shown).
    fn add_click(&mut self, s: usize, ev: &Event) {
        let state = &mut self.arena[s];
        state.clicks += 1;
        if state.first_t.is_none() {
            let rank = ev.rank.or_else(|| {
                let item = text(ev)?;
                let pos = state.items?.iter().position(|x| x == item)?;
                Some(pos as u64 + 1)
            });
            state.first_t = Some(ev.t);
            state.first_rank = rank;
        }
    }
}

// Writing records --------------------------------------------------------------------

/// `SearchRecord`s of the session's searches (`_search_records`), as msgspec
/// writes them; returns how many were clicked.
fn write_searches(
    out: &mut Vec<u8>,
    a: &Attach,
    session_id: &str,
    user: &str,
    rules: &Rules,
) -> i64 {
    let mut clicked_searches = 0;
    let last_search = a.searches.len().saturating_sub(1);
    for (pos, &si) in a.searches.iter().enumerate() {
        let s = &a.arena[si];
        let clicked = s.clicks > 0;
        let results = s.items.map(<[Text]>::len);
        let zero = results == Some(0);
        let (rr, ttfc) = if clicked {
            clicked_searches += 1;
            let ttfc = i128::from(s.first_t.unwrap_or(s.last_t)) - i128::from(s.last_t);
            (
                s.first_rank.map(|r| 1.0 / r as f64),
                Some(ttfc as f64 / 1e6),
            )
        } else {
            (Some(0.0), None)
        };
        out.extend_from_slice(b"{\"search_id\":");
        match s.sid {
            Some(sid) => json::write_str(out, sid),
            None => {
                // `f"{session_id}-{pos}"`: hex and digits, nothing to escape.
                out.push(b'"');
                out.extend_from_slice(session_id.as_bytes());
                out.push(b'-');
                out.extend_from_slice(itoa::Buffer::new().format(pos).as_bytes());
                out.push(b'"');
            }
        }
        out.extend_from_slice(b",\"session_id\":");
        json::write_str(out, session_id);
        out.extend_from_slice(b",\"user\":");
        json::write_str(out, user);
        out.extend_from_slice(b",\"query\":");
        match s.query {
            Some(q) => json::write_str(out, q),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"time\":");
        json::write_time(out, s.t);
        out.extend_from_slice(b",\"results\":");
        json::write_opt_int(out, results);
        out.extend_from_slice(b",\"zero_results\":");
        json::write_bool(out, zero);
        out.extend_from_slice(b",\"clicks\":");
        json::write_int(out, s.clicks);
        out.extend_from_slice(b",\"clicked\":");
        json::write_bool(out, clicked);
        out.extend_from_slice(if clicked {
            b",\"ctr\":1.0"
        } else {
            b",\"ctr\":0.0"
        });
        out.extend_from_slice(b",\"first_click_rank\":");
        json::write_opt_int(out, s.first_rank);
        out.extend_from_slice(b",\"reciprocal_rank\":");
        json::write_opt_f64(out, rr);
        out.extend_from_slice(b",\"time_to_first_click\":");
        json::write_opt_f64(out, ttfc);
        write_search_tail(out, s, clicked, zero, pos < last_search, rules);
    }
    clicked_searches
}

/// The rest of a `SearchRecord`, from `abandoned` on, and its line's end.
fn write_search_tail(
    out: &mut Vec<u8>,
    s: &Search,
    clicked: bool,
    zero: bool,
    not_last: bool,
    rules: &Rules,
) {
    out.extend_from_slice(b",\"abandoned\":");
    json::write_bool(out, !clicked && !zero);
    out.extend_from_slice(b",\"reformulated\":");
    json::write_bool(out, !clicked && not_last);
    out.extend_from_slice(b",\"long_click\":");
    json::write_bool(out, s.long);
    out.extend_from_slice(b",\"short_click\":");
    json::write_bool(out, s.short);
    out.extend_from_slice(b",\"keystrokes\":");
    json::write_int(out, s.keys);
    out.extend_from_slice(b",\"conversions\":");
    json::write_int(out, s.conversions);
    out.extend_from_slice(b",\"converted\":");
    json::write_bool(out, s.conversions > 0);
    out.extend_from_slice(b",\"conversion_value\":");
    json::write_f64(out, json::fsum(&s.values));
    out.extend_from_slice(b",\"dimensions\":");
    write_dimensions(out, &rules.dimensions, &s.dims);
    out.extend_from_slice(b"}\n");
}

/// The `SessionRecord` (`session_records`), as msgspec writes it.
fn write_session(
    out: &mut Vec<u8>,
    em: &Emitted,
    a: &Attach,
    session_id: &str,
    clicked_searches: i64,
    rules: &Rules,
) {
    let start = em.events.first().map_or(0, |e| e.t);
    let end = em.events.last().map_or(0, |e| e.t);
    let seconds = |from: i64, to: i64| (i128::from(to) - i128::from(from)) as f64 / 1e6;
    let n_searches = a.searches.len();
    out.extend_from_slice(b"{\"session_id\":");
    json::write_str(out, session_id);
    out.extend_from_slice(b",\"user\":");
    json::write_str(out, em.user);
    out.extend_from_slice(b",\"start\":");
    json::write_time(out, start);
    out.extend_from_slice(b",\"end\":");
    json::write_time(out, end);
    out.extend_from_slice(b",\"duration\":");
    json::write_f64(out, seconds(start, end));
    out.extend_from_slice(b",\"events\":");
    json::write_int(out, em.events.len());
    out.extend_from_slice(b",\"searches\":");
    json::write_int(out, n_searches);
    out.extend_from_slice(b",\"clicked_searches\":");
    json::write_int(out, clicked_searches);
    out.extend_from_slice(b",\"clicks\":");
    json::write_int(out, a.clicks);
    out.extend_from_slice(b",\"ctr\":");
    // Both counts are far below 2**53: exact as floats, so one correctly rounded
    // division, as Python's int / int.
    json::write_opt_f64(
        out,
        (n_searches > 0).then(|| clicked_searches as f64 / n_searches as f64),
    );
    out.extend_from_slice(b",\"end_reason\":");
    json::write_str(out, em.reason);
    out.extend_from_slice(b",\"conversions\":");
    json::write_int(out, a.conversions);
    out.extend_from_slice(b",\"conversion_value\":");
    json::write_f64(out, json::fsum(&a.values));
    out.extend_from_slice(b",\"success\":");
    json::write_bool(out, a.success_t.is_some());
    out.extend_from_slice(b",\"time_to_success\":");
    json::write_opt_f64(out, a.success_t.map(|t| seconds(start, t)));
    out.extend_from_slice(b",\"dimensions\":");
    match &a.first {
        Some(first) => write_dimensions(out, &rules.dimensions, first),
        None => out.extend_from_slice(b"{}"),
    }
    out.extend_from_slice(b"}\n");
}

/// `{NAME: value}` for each `--dimension`, in their order (`{}` without any); a
/// value the state lacks is `null`.
fn write_dimensions(out: &mut Vec<u8>, names: &[String], values: &[Option<&Dim>]) {
    out.push(b'{');
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_key(out, name);
        match values.get(i).copied().flatten() {
            None | Some(Dim::Null) => out.extend_from_slice(b"null"),
            Some(Dim::Bool(b)) => json::write_bool(out, *b),
            Some(Dim::Int(n)) => json::write_int(out, *n),
            Some(Dim::Float(f)) => json::write_f64(out, *f),
            Some(Dim::Str(s)) => json::write_str(out, s),
            Some(Dim::Big(s)) => out.extend_from_slice(s.as_bytes()),
        }
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{APP_CLOSE, APP_OPEN};

    fn ev(t: i64, kind: u8, payload: Payload, rank: Option<u64>, sid: Option<&str>) -> Event {
        Event {
            t,
            part: 0,
            seq: t,
            kind,
            user: "u".into(),
            payload,
            rank,
            search_id: sid.map(Box::from),
            dims: None,
        }
    }

    fn search(t: i64, q: &str) -> Event {
        ev(t, SEARCH, Payload::Text(q.into()), None, None)
    }

    fn click(t: i64, item: &str) -> Event {
        ev(t, CLICK, Payload::Text(item.into()), None, None)
    }

    fn results(t: i64, items: &[&str]) -> Event {
        let items = items.iter().map(|s| Text::from(*s)).collect();
        ev(t, RESULTS, Payload::Items(items), None, None)
    }

    fn rules() -> Rules {
        Rules {
            long_click_us: 30_000_000,
            short_click_us: 10_000_000,
            typeahead_us: None,
            dimensions: Vec::new(),
        }
    }

    fn run(events: &[Event], rules: &Rules) -> (String, String, [i64; 4], Vec<i64>) {
        let emitted = [Emitted {
            user: "u",
            events,
            reason: "gap",
        }];
        let (mut s, mut ss, mut counts, mut times) = (Vec::new(), Vec::new(), [0; 4], Vec::new());
        render(
            &emitted,
            rules,
            &mut counts,
            &mut s,
            &mut ss,
            Some(&mut times),
        );
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (text(s), text(ss), counts, times)
    }

    #[test]
    fn session_ids_are_pythons() {
        // hashlib.blake2b(b"s\x1fu\x1f0\x1f0", digest_size=8).hexdigest()
        assert_eq!(session_id_for("u", 0, 0), "c35f5304109468c7");
    }

    #[test]
    fn the_modules_doc_example() {
        let evs = [
            search(0, "dogs"),
            results(1_000_000, &["a", "b"]),
            click(2_000_000, "b"),
        ];
        let (s, ss, counts, times) = run(&evs, &rules());
        assert!(
            s.contains("\"first_click_rank\":2,\"reciprocal_rank\":0.5,"),
            "{s}"
        );
        assert!(s.contains("\"time_to_first_click\":2.0,"), "{s}");
        assert!(s.contains("\"ctr\":1.0,"), "{s}");
        assert!(s.contains("\"long_click\":true,"), "{s}");
        assert!(ss.contains("\"duration\":2.0,\"events\":3,"), "{ss}");
        assert!(
            ss.ends_with("\"time_to_success\":2.0,\"dimensions\":{}}\n"),
            "{ss}"
        );
        assert_eq!(counts, [1, 1, 1, 1]);
        assert_eq!(times, vec![0]);
    }

    #[test]
    fn typeahead_collapses_requests_into_one_intent() {
        let evs = [
            ev(0, APP_OPEN, Payload::None, None, None),
            search(1_000_000, "d"),
            search(1_500_000, " Do"),
            search(2_000_000, "dog"),
            search(9_000_000, "dogs"),
            ev(9_500_000, APP_CLOSE, Payload::None, None, None),
        ];
        let mut r = rules();
        r.typeahead_us = Some(2_000_000);
        let (s, _, counts, times) = run(&evs, &r);
        assert_eq!(counts[1], 2);
        assert_eq!(times, vec![1_000_000, 9_000_000]);
        assert!(s.contains("\"query\":\"dog\""), "{s}");
        assert!(s.contains("\"keystrokes\":3,"), "{s}");
    }

    #[test]
    fn ids_attach_to_later_searches_and_never_panic() {
        let evs = [
            ev(
                0,
                CLICK,
                Payload::Text("a".into()),
                Some(u64::MAX),
                Some("x"),
            ),
            ev(1, SEARCH, Payload::None, None, Some("x")),
            ev(2, CONVERSION, Payload::None, None, Some("nowhere")),
            ev(3, RESULTS, Payload::None, None, None),
        ];
        let (s, ss, counts, _) = run(&evs, &rules());
        assert_eq!(counts, [1, 1, 1, 1]);
        assert!(s.starts_with("{\"search_id\":\"x\","), "{s}");
        assert!(s.contains("\"query\":null,"), "{s}");
        assert!(
            s.contains("\"first_click_rank\":18446744073709551615,"),
            "{s}"
        );
        assert!(
            s.contains("\"reciprocal_rank\":5.421010862427522e-20,"),
            "{s}"
        );
        assert!(s.contains("\"time_to_first_click\":-1e-6,"), "{s}");
        assert!(ss.contains("\"conversions\":1,"), "{ss}");
        let (s, ss, counts, _) = run(&[], &rules());
        assert_eq!((s.as_str(), ss.as_str(), counts), ("", "", [0; 4]));
    }

    #[test]
    fn dimensions_keep_first_and_latest_values() {
        let mut a = search(0, "q");
        a.dims = Some(vec![Dim::Null, Dim::Int(-(1 << 100))].into());
        let mut b = search(1, "r");
        b.dims = Some(vec![Dim::Str("web".into()), Dim::Float(0.5)].into());
        let mut r = rules();
        r.dimensions = vec!["platform".into(), "n".into()];
        let (s, ss, _, _) = run(&[a, b], &r);
        let first = "{\"platform\":null,\"n\":-1267650600228229401496703205376}";
        assert!(s.contains(&format!("\"dimensions\":{first}}}\n")), "{s}");
        assert!(
            s.ends_with("\"dimensions\":{\"platform\":\"web\",\"n\":0.5}}\n"),
            "{s}"
        );
        let session = "{\"platform\":\"web\",\"n\":-1267650600228229401496703205376}";
        assert!(
            ss.ends_with(&format!("\"dimensions\":{session}}}\n")),
            "{ss}"
        );
    }

    #[test]
    fn typing_reads_text_as_python_does() {
        let runs: Vec<bool> = ["runn", "rnu", "rn", "ran", "x"]
            .iter()
            .map(|q| continues_typing(q, "run"))
            .collect();
        assert_eq!(runs, [true, false, true, true, false]);
        assert!(continues_typing("héllo", "hallo"));
        assert!(
            !continues_typing("é", "ab"),
            "é is one code point (two bytes)"
        );
        assert_eq!(typing_key("\u{1c} ΟΔΟΣ\u{1f}\u{a0}"), "οδος");
        assert_eq!(typing_key("ΣΑ"), "σα");
        assert_eq!(typing_key("İ"), "i\u{307}");
        assert_eq!(typing_key("\u{10d50}Σ"), "\u{10d50}σ");
        assert_eq!(typing_key("a\u{e000}\u{a7cb}Σ"), "a\u{e000}\u{a7cb}σ");
    }
}
