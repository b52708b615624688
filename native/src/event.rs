//! Events: the Python core's event tuple (`core/events.py`) as a Rust struct.
//!
//! `(time_us, part, seq, kind, user, payload, rank, search_id[, dimensions])`: the
//! same slots, the same order (events sort by them), the same equality (exact
//! duplicates are equal from `kind` on). Blocks of events travel between the input
//! and the shards, and into snapshots, as bytes ([`pack`], [`unpack`]).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// A user, a query, a clicked item or a results item: text of up to 24 bytes (nearly
/// all of them) is held inline, with no allocation of its own.
pub type Text = compact_str::CompactString;

pub const APP_OPEN: u8 = 0;
pub const SEARCH: u8 = 1;
pub const RESULTS: u8 = 2;
pub const CLICK: u8 = 3;
pub const APP_CLOSE: u8 = 4;
pub const CONVERSION: u8 = 5;

/// Input `type` names, indexed by kind (`KIND_NAMES`).
pub const KIND_NAMES: [&str; 6] = [
    "app_open",
    "search",
    "results",
    "click",
    "app_close",
    "conversion",
];

/// The kind-dependent slot: a search's query, a click's item, a results list, a
/// conversion's `(item, value, kind)`, or nothing.
#[derive(Clone, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
pub enum Payload {
    None,
    Text(Text),
    Items(Vec<Text>),
    Conversion(Box<Conversion>),
}

/// A conversion's `(item, value, kind)`: boxed in [`Payload`], which it would
/// otherwise make twice as large for every event (conversions are few).
#[derive(Clone, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct Conversion {
    pub item: Option<String>,
    pub value: Option<f64>,
    pub kind: Option<String>,
}

/// A `--dimension` value: what msgspec decodes a JSON scalar into.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Dim {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    /// An integer beyond `i128`, as Python writes it (`str(int)`): the Python core keeps
    /// any integer, and so must its records.
    Big(Box<str>),
}

impl Dim {
    /// The value as Python compares numbers (`True == 1 == 1.0`), or `None` for text and null.
    fn number(&self) -> Option<f64> {
        match self {
            Dim::Bool(b) => Some(f64::from(u8::from(*b))),
            Dim::Int(i) => Some(*i as f64),
            Dim::Float(f) => Some(*f),
            _ => None,
        }
    }
}

impl PartialEq for Dim {
    /// Python's equality: numbers of any type compare by value, exactly.
    fn eq(&self, other: &Dim) -> bool {
        match (self, other) {
            (Dim::Null, Dim::Null) => true,
            (Dim::Str(a), Dim::Str(b)) => a == b,
            (Dim::Int(a), Dim::Int(b)) => a == b,
            (Dim::Bool(a), Dim::Bool(b)) => a == b,
            (Dim::Float(a), Dim::Float(b)) => a == b,
            (Dim::Int(i), Dim::Float(f)) | (Dim::Float(f), Dim::Int(i)) => int_eq_float(*i, *f),
            (Dim::Big(a), Dim::Big(b)) => a == b,
            (Dim::Big(s), Dim::Float(f)) | (Dim::Float(f), Dim::Big(s)) => big_eq_float(s, *f),
            _ => match (self.number(), other.number()) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
        }
    }
}

/// Whether a float is exactly the integer written `digits` (`{:.0}` writes a float's
/// exact value).
fn big_eq_float(digits: &str, f: f64) -> bool {
    f.is_finite() && f.fract() == 0.0 && format!("{f:.0}") == digits
}

fn int_eq_float(i: i128, f: f64) -> bool {
    f.fract() == 0.0 && f.abs() < 1.7e38 && (f as i128) == i
}

/// One input event (see the module's doc).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    pub t: i64,
    pub part: u32,
    pub seq: i64,
    pub kind: u8,
    pub user: Text,
    pub payload: Payload,
    pub rank: Option<u64>,
    pub search_id: Option<Box<str>>,
    pub dims: Option<Box<[Dim]>>,
}

impl Event {
    /// Whether the two are exact duplicates: equal from `kind` on (the time is
    /// compared by the caller), as the Python core's `ev[3:]`.
    pub fn same_record(&self, other: &Event) -> bool {
        self.kind == other.kind
            && self.user == other.user
            && self.payload == other.payload
            && self.rank == other.rank
            && self.search_id == other.search_id
            && self.dims == other.dims
    }

    /// The order of the Python tuples: `(time, part, seq)` is unique for all but the
    /// several events of one line (AOL's search and its click), which go by kind.
    pub fn order(&self, other: &Event) -> Ordering {
        (self.t, self.part, self.seq, self.kind, &self.user)
            .cmp(&(other.t, other.part, other.seq, other.kind, &other.user))
            .then_with(|| {
                self.payload
                    .partial_cmp(&other.payload)
                    .unwrap_or(Ordering::Equal)
            })
    }
}

/// Events as bytes: a block for a shard, or a snapshot's pending events.
pub fn pack<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).unwrap_or_default()
}

/// What [`pack`] packed; an error for bytes it did not write.
pub fn unpack<'a, T: Deserialize<'a>>(data: &'a [u8]) -> Result<T, String> {
    postcard::from_bytes(data).map_err(|e| format!("not a packed event block: {e}"))
}

#[cfg(test)]
impl Event {
    /// An event of `kind` by `user` at `t`, line `seq` of partition 0: a search's query
    /// "q", nothing else (for tests).
    pub(crate) fn plain(t: i64, seq: i64, kind: u8, user: &str) -> Event {
        Event {
            t,
            part: 0,
            seq,
            kind,
            user: user.into(),
            payload: if kind == SEARCH {
                Payload::Text("q".into())
            } else {
                Payload::None
            },
            rank: None,
            search_id: None,
            dims: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: i64, seq: i64, kind: u8, payload: Payload) -> Event {
        Event {
            t,
            part: 0,
            seq,
            kind,
            user: "u".into(),
            payload,
            rank: None,
            search_id: None,
            dims: Some(vec![Dim::Int(1), Dim::Str("web".into())].into()),
        }
    }

    #[test]
    fn packs_and_unpacks() {
        let evs = vec![
            ev(1, 1, SEARCH, Payload::Text("dogs".into())),
            ev(
                2,
                2,
                CONVERSION,
                Payload::Conversion(Box::new(Conversion {
                    item: None,
                    value: Some(2.5),
                    kind: Some("purchase".into()),
                })),
            ),
        ];
        let back: Vec<Event> = unpack(&pack(&evs)).unwrap();
        assert_eq!(back.len(), 2);
        assert!(back[1].same_record(&evs[1]));
        assert!(unpack::<Vec<Event>>(b"\xff\xff\xff").is_err());
    }

    #[test]
    fn dimensions_compare_as_python_does() {
        assert_eq!(Dim::Int(1), Dim::Bool(true));
        assert_eq!(Dim::Float(1.0), Dim::Int(1));
        assert_ne!(Dim::Float(1.5), Dim::Int(1));
        assert_ne!(Dim::Str("1".into()), Dim::Int(1));
        assert_eq!(Dim::Null, Dim::Null);
        let big = |s: &str| Dim::Big(s.into());
        let two_127 = "170141183460469231731687303715884105728";
        assert_eq!(big(two_127), Dim::Float(2f64.powi(127)));
        assert_eq!(
            Dim::Float(-(2f64.powi(130))),
            big("-1361129467683753853853498429727072845824")
        );
        assert_ne!(big(two_127), Dim::Float(2f64.powi(127) * 1.5));
        assert_ne!(big(two_127), big("170141183460469231731687303715884105729"));
        assert_ne!(big(two_127), Dim::Int(i128::MAX));
        assert_ne!(big(two_127), Dim::Bool(true));
    }

    #[test]
    fn sorts_by_time_then_position() {
        let a = ev(1, 2, SEARCH, Payload::Text("b".into()));
        let b = ev(1, 3, SEARCH, Payload::Text("a".into()));
        assert_eq!(a.order(&b), Ordering::Less);
        assert_eq!(b.order(&a), Ordering::Greater);
    }
}
