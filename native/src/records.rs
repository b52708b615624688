//! Per-search and per-session records (`core/searches.py`), encoded as the Python
//! core's msgspec encoder writes them (`SearchRecord`, `SessionRecord` in
//! `core/schema.py`): byte for byte the same JSON lines.

use crate::event::Event;

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

/// `render` of `core/searches.py`: appends each session's search records to
/// `searches` and its session record to `sessions` (one JSON object per line, as
/// `msgspec.json.Encoder().encode_lines`), adds to `counts` (sessions, searches,
/// clicked searches, clicks) and, when given, to `times` each search record's time.
pub fn render(
    _emitted: &[Emitted],
    _rules: &Rules,
    _counts: &mut [i64; 4],
    _searches: &mut Vec<u8>,
    _sessions: &mut Vec<u8>,
    _times: Option<&mut Vec<i64>>,
) {
    unimplemented!("records::render")
}
