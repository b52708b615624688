//! JSON Lines decoding with the Python core's rules (`core/events.py`, `core/layout.py`,
//! `core/schema.py`, `core/time.py`, msgspec's).
//!
//! The contract: [`LineDecoder::decode`] returns `Some(event)` only when the Python
//! core's `EventDecoder.decode(line, seq)` returns exactly that event; `None` when the
//! line is invalid *or* when this decoder is not sure. The caller then asks the Python
//! core, which gives the reason (dead letters keep the Python core's words) or the
//! event. So every rare or odd spelling may return `None`; a wrong `Some` is a bug.
//!
//! msgspec picks the struct by the `type` tag wherever it sits in the object, and a
//! field the chosen struct does not have is ignored whatever its value. So the object
//! is read in one pass (serde_json, one visitor) keeping the raw JSON text of every
//! key this layout knows, skipping the rest; the tag then says which fields must be
//! there and what they must be ([`crate::scalar`] reads them).
//!
//! Deferred to the Python core (`None`), besides invalid lines: a key given twice
//! (msgspec keeps the last one only if every copy has the right type), a key with an
//! escape, integers past i64 in the fields used, time text that is not printable ASCII,
//! a non-ASCII currency when `--currency` is set, and every line of a layout whose
//! names collide (two fields, or a field and a dimension, under one input name; one
//! type name for two kinds) or whose time unit is unknown.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::delimited::Columns;
use crate::event::{Conversion, Text, RESULTS, SEARCH};
use crate::event::{Dim, Event, Payload, APP_CLOSE, APP_OPEN, CLICK, CONVERSION, KIND_NAMES};
use crate::scalar::{self, Scalar};
use crate::time::{self, Unit};

/// How an input names things (`InputLayout`): `(ours, theirs)` field names, extra
/// `(ours, theirs)` type names, the epoch unit (`auto`, `s`, `ms`, `us`, `ns`), the
/// `--dimension` fields, and `--currency` (upper-cased; `None`: not checked).
#[derive(Clone, Debug, Default)]
pub struct Layout {
    pub fields: Vec<(String, String)>,
    pub types: Vec<(String, String)>,
    pub unit: String,
    pub dimensions: Vec<String>,
    pub currency: Option<String>,
}

/// Our field names; a field's slot is its index here (dimension `i` is `FIELDS.len() + i`).
pub(crate) const FIELDS: [&str; 11] = [
    "type",
    "user",
    "time",
    "query",
    "items",
    "item",
    "rank",
    "search_id",
    "value",
    "currency",
    "kind",
];
pub(crate) const TYPE: usize = 0;
pub(crate) const USER: usize = 1;
pub(crate) const TIME: usize = 2;
pub(crate) const QUERY: usize = 3;
pub(crate) const ITEMS: usize = 4;
pub(crate) const ITEM: usize = 5;
pub(crate) const RANK: usize = 6;
pub(crate) const SEARCH_ID: usize = 7;
const VALUE: usize = 8;
const CURRENCY: usize = 9;
const CONV_KIND: usize = 10;

/// Every kind's type names, ours then the tutorial's (`layout.py` `_TAGS`).
const TAGS: [(u8, &str); 13] = [
    (APP_OPEN, "app_open"),
    (APP_OPEN, "AppOpen"),
    (SEARCH, "search"),
    (SEARCH, "Search"),
    (RESULTS, "results"),
    (RESULTS, "Results"),
    (CLICK, "click"),
    (CLICK, "ClickResult"),
    (APP_CLOSE, "app_close"),
    (APP_CLOSE, "AppClose"),
    (CONVERSION, "conversion"),
    (CONVERSION, "purchase"),
    (CONVERSION, "add_to_cart"),
];

/// Type names that are conversions of the kind they name (`CONVERSION_ALIASES`).
const CONVERSION_ALIASES: [&str; 2] = ["purchase", "add_to_cart"];

/// What this layout's lines are read with.
pub(crate) struct Names {
    /// The input's name of each slot (fields, then dimensions).
    pub(crate) keys: Vec<String>,
    /// Each key's [`head`]: a line's key is matched on it first.
    pub(crate) heads: Vec<u64>,
    /// `(type name, kind)`: every name a line's tag may have.
    pub(crate) tags: Vec<(String, u8)>,
    /// Each tag's [`head`].
    pub(crate) tag_heads: Vec<u64>,
    pub(crate) unit: Unit,
}

impl Names {
    /// The kind a line's type name stands for (as [`Key`] finds a key).
    pub(crate) fn kind_of(&self, tag: &str) -> Option<u8> {
        let names = self.tags.iter().map(|(t, _)| t.as_str());
        find(&self.tag_heads, names, tag).map(|at| self.tags[at].1)
    }
}

/// Decodes one input partition's lines (see the module's doc).
pub struct LineDecoder {
    /// `None`: a layout whose every line goes to the Python core.
    names: Option<Names>,
    dims: usize,
    currency: Option<String>,
    /// A CSV or TSV input's columns (its lines are rows, not JSON objects).
    columns: Option<Columns>,
}

impl LineDecoder {
    pub fn new(layout: Layout) -> Result<LineDecoder, String> {
        Ok(LineDecoder {
            names: names(&layout),
            dims: layout.dimensions.len(),
            currency: layout.currency,
            columns: None,
        })
    }

    /// A decoder of a CSV or TSV input's rows (`CsvDecoder`), under its header row
    /// (`header`: the line without its line end; `names`: its cells, stripped, as the
    /// Python core read them): see [`crate::delimited`].
    pub fn delimited(
        layout: Layout,
        delimiter: u8,
        header: Vec<u8>,
        names: &[String],
    ) -> Result<LineDecoder, String> {
        let mut decoder = LineDecoder::new(layout)?;
        match decoder
            .names
            .as_ref()
            .and_then(|n| Columns::new(n, delimiter, header, names))
        {
            Some(columns) => decoder.columns = Some(columns),
            None => decoder.names = None, // (every row to the Python core)
        }
        Ok(decoder)
    }

    /// The event on the line (with `part` and `seq`), or `None`: ask the Python core.
    pub fn decode(&self, line: &[u8], part: u32, seq: i64) -> Option<Event> {
        let names = self.names.as_ref()?;
        if let Some(columns) = &self.columns {
            return columns.decode(names, self.dims, line, part, seq);
        }
        // msgspec refuses bytes that are not UTF-8; `from_str` then skips serde_json's
        // own check of every string.
        let text = std::str::from_utf8(line).ok()?;
        let mut de = serde_json::Deserializer::from_str(text);
        let raw = de.deserialize_map(RawFields { names }).ok()?;
        de.end().ok()?;
        if !surrogates_paired(text) {
            return None;
        }
        self.event(names, &raw, part, seq)
    }

    /// The line's event time alone (`EventDecoder.times`, the pre-scan of `--order
    /// auto`): `Some(None)` for a line without a time the Python core would read, `None`
    /// where this decoder is not sure (ask the Python core).
    pub fn time(&self, line: &[u8]) -> Option<Option<i64>> {
        let names = self.names.as_ref()?;
        if let Some(columns) = &self.columns {
            return columns.time(names, line);
        }
        let text = std::str::from_utf8(line).ok()?;
        let mut de = serde_json::Deserializer::from_str(text);
        let key = Key {
            keys: &names.keys[TIME..=TIME],
            heads: &names.heads[TIME..=TIME],
        };
        let time = de.deserialize_map(TimeOnly { key }).ok()?;
        de.end().ok()?;
        if !surrogates_paired(text) {
            return None;
        }
        let Some(value) = time else {
            return Some(None); // msgspec: the required field is missing
        };
        Some(match scalar::scalar(value)? {
            Scalar::Str(s) => time::from_str(&s, names.unit)?.ok(),
            Scalar::Int(i) => time::from_int(i128::from(i), names.unit).ok(),
            Scalar::Float(v) => time::from_float(v, names.unit).ok(),
            Scalar::Bool(_) | Scalar::Null => None,
        })
    }

    /// The event the raw fields make, `None` where the Python core would refuse it
    /// (or where this decoder is not sure).
    fn event(&self, names: &Names, line: &Raw, part: u32, seq: i64) -> Option<Event> {
        let raw = &line.fields;
        let tag = scalar::string(raw[TYPE]?)?;
        let kind = names.kind_of(&tag)?;
        let user = match scalar::scalar(raw[USER]?)? {
            Scalar::Str(s) => Text::from(s),
            Scalar::Int(i) => Text::from(itoa::Buffer::new().format(i)),
            _ => return None,
        };
        let t = match scalar::scalar(raw[TIME]?)? {
            Scalar::Str(s) => time::from_str(&s, names.unit)?,
            Scalar::Int(i) => time::from_int(i128::from(i), names.unit),
            Scalar::Float(v) => time::from_float(v, names.unit),
            _ => return None,
        }
        .ok()?;
        let (payload, rank, search_id) = match kind {
            APP_OPEN | APP_CLOSE => (Payload::None, None, None),
            SEARCH => (
                Payload::Text(Text::from(scalar::string(raw[QUERY]?)?)),
                None,
                None,
            ),
            RESULTS => (
                Payload::Items(serde_json::from_str(raw[ITEMS]?).ok()?),
                None,
                None,
            ),
            CLICK => (
                Payload::Text(Text::from(scalar::string(raw[ITEM]?)?)),
                rank(raw[RANK])?,
                None,
            ),
            _ => (self.conversion(raw, &tag)?, None, None),
        };
        let search_id = match kind {
            APP_OPEN | APP_CLOSE => search_id,
            _ => scalar::optional_text(raw[SEARCH_ID])?.map(String::into_boxed_str),
        };
        let dims = match self.dims {
            0 => None,
            _ => Some(line.dims.iter().map(|r| dim(*r)).collect::<Option<_>>()?),
        };
        Some(Event {
            t,
            part,
            seq,
            kind,
            user,
            payload,
            rank,
            search_id,
            dims,
        })
    }

    /// A conversion's `(item, value, kind)` (`EventDecoder._conversion`): `None` for a
    /// currency other than `--currency` (compared upper-cased; a non-ASCII one is left
    /// to Python's `str.upper`). The value is finite: JSON has no other.
    fn conversion(&self, raw: &[Option<&str>], tag: &str) -> Option<Payload> {
        let item = scalar::optional_text(raw[ITEM])?;
        let value = scalar::optional_float(raw[VALUE])?;
        let currency = scalar::optional_text(raw[CURRENCY])?;
        let conv_kind = scalar::optional_text(raw[CONV_KIND])?;
        if let (Some(want), Some(got)) = (&self.currency, &currency) {
            if !want.is_ascii() || !got.is_ascii() || got.to_ascii_uppercase() != *want {
                return None;
            }
        }
        let kind = match CONVERSION_ALIASES.contains(&tag) {
            true => Some(tag.to_owned()),
            false => conv_kind,
        };
        Some(Payload::Conversion(Box::new(Conversion {
            item,
            value,
            kind,
        })))
    }
}

/// A click's `rank`: an integer >= 1 or null (absent: null); `None` otherwise.
pub(crate) fn rank(raw: Option<&str>) -> Option<Option<u64>> {
    match raw.map(scalar::scalar) {
        None | Some(Some(Scalar::Null)) => Some(None),
        Some(Some(Scalar::Int(i))) if i >= 1 => Some(Some(i.unsigned_abs())),
        _ => None,
    }
}

/// A dimension's value (`DimensionValue`: absent is null); `None` for an array, an
/// object, or a number [`scalar::scalar`] defers.
fn dim(raw: Option<&str>) -> Option<Dim> {
    let Some(raw) = raw else {
        return Some(Dim::Null);
    };
    Some(match scalar::scalar(raw)? {
        Scalar::Str(s) => Dim::Str(s.into_owned()),
        Scalar::Int(i) => Dim::Int(i128::from(i)),
        Scalar::Float(v) => Dim::Float(v),
        Scalar::Bool(b) => Dim::Bool(b),
        Scalar::Null => Dim::Null,
    })
}

/// The input names of a layout's fields and types (`layout.py` `event_types`), or
/// `None` for a layout this decoder leaves to the Python core: one whose names collide
/// (msgspec would need to settle which field a key is, or which struct a tag is), or
/// whose time unit is unknown.
fn names(layout: &Layout) -> Option<Names> {
    let unit = Unit::parse(&layout.unit)?;
    let mut keys: Vec<String> = FIELDS.iter().map(|f| f.to_string()).collect();
    for (ours, theirs) in &layout.fields {
        if let Some(i) = FIELDS.iter().position(|f| f == ours) {
            keys[i] = theirs.clone();
        }
    }
    keys.extend(layout.dimensions.iter().cloned());
    let mut tags: Vec<(String, u8)> = TAGS.iter().map(|(k, t)| (t.to_string(), *k)).collect();
    for (kind, name) in KIND_NAMES.iter().enumerate() {
        let own: Vec<&str> = TAGS
            .iter()
            .filter(|t| usize::from(t.0) == kind)
            .map(|t| t.1)
            .collect();
        for (ours, theirs) in &layout.types {
            if ours == name && !own.contains(&theirs.as_str()) {
                tags.push((theirs.clone(), kind as u8));
            }
        }
    }
    let heads = keys.iter().map(|k| head(k)).collect();
    let tag_heads = tags.iter().map(|(t, _)| head(t)).collect();
    (distinct(keys.iter()) && distinct(tags.iter().map(|t| &t.0))).then_some(Names {
        keys,
        heads,
        tag_heads,
        tags,
        unit,
    })
}

/// Whether no two of the names are equal.
fn distinct<'a>(names: impl Iterator<Item = &'a String>) -> bool {
    let mut seen = rustc_hash::FxHashSet::default();
    names.into_iter().all(|n| seen.insert(n))
}

/// The error that makes [`LineDecoder::decode`] defer a line it reads no further.
fn defer<E: de::Error>() -> E {
    E::custom("deferred to the Python core")
}

/// The raw JSON text of each slot's key on one line (`None`: absent).
struct Raw<'a> {
    fields: [Option<&'a str>; FIELDS.len()],
    dims: Vec<Option<&'a str>>,
}

/// One pass over the object: the raw text of each slot's key, every other key's value
/// skipped unread.
struct RawFields<'k> {
    names: &'k Names,
}

impl<'de> Visitor<'de> for RawFields<'_> {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = Raw {
            fields: [None; FIELDS.len()],
            dims: vec![None; self.names.keys.len() - FIELDS.len()],
        };
        let key = Key {
            keys: &self.names.keys,
            heads: &self.names.heads,
        };
        while let Some(slot) = map.next_key_seed(key)? {
            let Some(slot) = slot else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let value = map.next_value::<&'de RawValue>()?.get();
            let at = match slot.checked_sub(FIELDS.len()) {
                None => &mut raw.fields[slot],
                Some(dim) => &mut raw.dims[dim],
            };
            if at.replace(value).is_some() {
                return Err(defer()); // a repeated key
            }
        }
        Ok(raw)
    }
}

/// Whether every `\uD800`-`\uDFFF` escape on the line (even in a value no struct reads)
/// is half of a pair: msgspec refuses the line otherwise, while serde_json skips a string
/// without pairing its escapes. The rare line with such an escape is decoded in full.
pub(crate) fn surrogates_paired(raw: &str) -> bool {
    // Most lines have no backslash at all (memchr's vector search finds that).
    let bytes = raw.as_bytes();
    let Some(first) = memchr::memchr(b'\\', bytes) else {
        return true;
    };
    let rest = &bytes[first..];
    let suspect = memchr::memmem::find_iter(rest, b"\\u")
        .any(|i| rest.get(i + 2).is_some_and(|b| (b | 0x20) == b'd'));
    // serde_json decodes strings with their escapes paired, or refuses them.
    !suspect || serde_json::from_str::<serde_json::Value>(raw).is_ok()
}

/// One pass over the object for the time field alone (`time_type`: msgspec reads no
/// other field, so a repeated one does not matter); a repeated time key defers.
struct TimeOnly<'k> {
    key: Key<'k>,
}

impl<'de> Visitor<'de> for TimeOnly<'_> {
    type Value = Option<&'de str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut time = None;
        while let Some(slot) = map.next_key_seed(self.key)? {
            if slot.is_none() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value = map.next_value::<&'de RawValue>()?.get();
            if time.replace(value).is_some() {
                return Err(defer()); // a repeated key
            }
        }
        Ok(time)
    }
}

/// A key: `Some(slot)` for a known one, `None` for another; an escaped key defers.
#[derive(Clone, Copy)]
struct Key<'k> {
    keys: &'k [String],
    heads: &'k [u64],
}

/// A key's length and first 7 bytes as one number: keys of a layout nearly always
/// differ there (`type`, `user`, `time`, `item` and `rank` share a length), so one
/// comparison a candidate replaces a `memcmp` call (a fortieth of a run's time).
fn head(key: &str) -> u64 {
    let bytes = key.as_bytes();
    let mut head = bytes.len().min(255) as u64;
    for (i, &b) in bytes.iter().take(7).enumerate() {
        head |= u64::from(b) << (8 * (i + 1));
    }
    head
}

/// Where `v` is among `names`, whose [`head`]s are `heads`: the full text compared
/// only where the heads are equal and `v` is longer than a head holds.
fn find<'a>(heads: &[u64], names: impl Iterator<Item = &'a str>, v: &str) -> Option<usize> {
    let h = head(v);
    heads
        .iter()
        .zip(names)
        .position(|(&nh, name)| nh == h && (v.len() <= 7 || name == v))
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(find(self.heads, self.keys.iter().map(String::as_str), v))
    }

    /// A key serde_json had to unescape: whether msgspec matches it the same way is
    /// not worth finding out for so rare a spelling.
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(defer())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> LineDecoder {
        LineDecoder::new(Layout {
            unit: "auto".into(),
            ..Layout::default()
        })
        .unwrap()
    }

    fn layout(fields: &[(&str, &str)], types: &[(&str, &str)], dims: &[&str]) -> LineDecoder {
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        LineDecoder::new(Layout {
            fields: pairs(fields),
            types: pairs(types),
            unit: "auto".into(),
            dimensions: dims.iter().map(|d| d.to_string()).collect(),
            currency: Some("USD".into()),
        })
        .unwrap()
    }

    fn one(d: &LineDecoder, line: &str) -> Option<Event> {
        d.decode(line.as_bytes(), 3, 7)
    }

    #[test]
    fn keys_alike_in_length_and_first_bytes_are_told_apart() {
        let long = "d".repeat(300);
        let longer = format!("{long}x");
        let d = layout(
            &[
                ("user", "user_identifier_a"),
                ("query", "user_identifier_b"),
            ],
            &[],
            &["platform_a", "platform_b", &long, &longer, "typ"],
        );
        let line = format!(
            r#"{{"type":"search","user_identifier_b":"q","user_identifier_a":"u","time":0,"platform_b":2,"platform_a":1,"{longer}":4,"{long}":3,"typ":5,"platform_":9,"tim":1}}"#
        );
        let ev = one(&d, &line).unwrap();
        assert_eq!(
            (ev.user.as_str(), &ev.payload),
            ("u", &Payload::Text("q".into()))
        );
        let dims: Vec<Dim> = (1..=5).map(Dim::Int).collect();
        assert_eq!(ev.dims.as_deref(), Some(&dims[..]));
    }

    #[test]
    fn decodes_the_readme_lines() {
        let d = plain();
        let ev = one(&d, r#"{"type": "search", "user": "u1", "time": "2024-01-01T00:00:05Z", "query": "dogs", "search_id": "s-1"}"#).unwrap();
        assert_eq!(
            (ev.t, ev.part, ev.seq, ev.kind),
            (1_704_067_205_000_000, 3, 7, SEARCH)
        );
        assert_eq!(
            (ev.user.as_str(), ev.search_id.as_deref()),
            ("u1", Some("s-1"))
        );
        assert_eq!(ev.payload, Payload::Text("dogs".into()));
        assert!(ev.dims.is_none());
        let ev = one(
            &d,
            r#"{"type":"results","user":7,"time":0,"items":["a","b\u00e9"]}"#,
        )
        .unwrap();
        assert_eq!(ev.user, "7");
        assert_eq!(
            ev.payload,
            Payload::Items(vec!["a".into(), "b\u{e9}".into()])
        );
        let ev = one(
            &d,
            r#"{"item":"rover","rank":2,"type":"ClickResult","user":-0,"time":1.5}"#,
        )
        .unwrap();
        assert_eq!(
            (ev.kind, ev.rank, ev.t, ev.user.as_str()),
            (CLICK, Some(2), 1_500_000, "0")
        );
        let ev = one(
            &d,
            r#"{"type":"app_close","user":"u","time":"1700000000","search_id":5}"#,
        )
        .unwrap();
        assert_eq!(
            (ev.kind, ev.t, ev.search_id),
            (APP_CLOSE, 1_700_000_000_000_000, None)
        );
    }

    #[test]
    fn conversions_take_their_kind_from_the_tag_or_the_field() {
        let d = plain();
        let ev = one(
            &d,
            r#"{"type":"purchase","user":"u","time":0,"value":2,"kind":"x","currency":"eur"}"#,
        )
        .unwrap();
        let want = Payload::Conversion(Box::new(Conversion {
            item: None,
            value: Some(2.0),
            kind: Some("purchase".into()),
        }));
        assert_eq!(ev.payload, want);
        let ev = one(
            &d,
            r#"{"type":"conversion","user":"u","time":0,"item":"i","kind":"signup"}"#,
        )
        .unwrap();
        let want = Payload::Conversion(Box::new(Conversion {
            item: Some("i".into()),
            value: None,
            kind: Some("signup".into()),
        }));
        assert_eq!(ev.payload, want);
        let usd = layout(&[], &[], &[]);
        assert!(one(
            &usd,
            r#"{"type":"conversion","user":"u","time":0,"currency":"usd"}"#
        )
        .is_some());
        assert!(one(
            &usd,
            r#"{"type":"conversion","user":"u","time":0,"currency":null}"#
        )
        .is_some());
        assert!(one(
            &usd,
            r#"{"type":"conversion","user":"u","time":0,"currency":"EUR"}"#
        )
        .is_none());
        assert!(one(
            &usd,
            r#"{"type":"conversion","user":"u","time":0,"value":"1"}"#
        )
        .is_none());
        assert!(one(
            &usd,
            r#"{"type":"conversion","user":"u","time":0,"value":1e999}"#
        )
        .is_none());
    }

    #[test]
    fn ignores_what_the_type_does_not_have() {
        let d = plain();
        let line = r#"{"rank":"x","items":5,"type":"search","user":"u","time":0,"query":"q","x":[{"y":null}]}"#;
        assert!(one(&d, line).is_some());
        assert!(one(
            &d,
            r#"{"type":"click","user":"u","time":0,"item":"i","rank":"x"}"#
        )
        .is_none());
    }

    #[test]
    fn defers_invalid_and_unsure_lines() {
        let d = plain();
        for line in [
            "",
            "\n",
            "[]",
            "{",
            r#"{"type":"search","user":"u","time":0}"#,
            r#"{"type":"search","user":"u","time":0,"query":1}"#,
            r#"{"type":"bogus","user":"u","time":0}"#,
            r#"{"type":"app_open","user":"u","time":0} x"#,
            r#"{"type":"app_open","user":"u","user":"u","time":0}"#,
            r#"{"type":"app_open","type":"app_open","user":"u","time":0}"#,
            r#"{"type":"app_open","us\u0065r":"u","time":0}"#,
            r#"{"type":"app_open","user":1.0,"time":0}"#,
            r#"{"type":"app_open","user":99999999999999999999,"time":0}"#,
            r#"{"type":"app_open","user":"u","time":true}"#,
            r#"{"type":"app_open","user":"u","time":"soon"}"#,
            r#"{"type":"app_open","user":"u","time":"\u0661"}"#,
            r#"{"type":"click","user":"u","time":0,"item":"i","rank":0}"#,
            r#"{"type":"results","user":"u","time":0,"items":["a",1]}"#,
            r#"{"type":"search","user":"u","time":0,"query":"\ud800"}"#,
            r#"{"type":"search","user":"u","time":0,"query":"q","x":["\ud800"]}"#,
            r#"{"type":"search","user":"u","time":0,"query":"q","item":"\udc00"}"#,
            "\u{feff}{\"type\":\"app_open\",\"user\":\"u\",\"time\":0}",
        ] {
            assert!(one(&d, line).is_none(), "{line}");
        }
        assert!(d
            .decode(
                b"{\"type\":\"app_open\",\"user\":\"\xff\",\"time\":0}",
                0,
                1
            )
            .is_none());
    }

    #[test]
    fn pairs_surrogate_escapes_as_msgspec_does() {
        let d = plain();
        for ok in [
            r#"{"type":"search","user":"u","time":0,"query":"\ud83d\ude00"}"#,
            r#"{"type":"search","user":"u","time":0,"query":"\\ud800"}"#,
            r#"{"type":"search","user":"u","time":0,"query":"a\\","x":"\\uD800\\u"}"#,
            r#"{"type":"search","user":"u","time":0,"query":"\u00e9\n"}"#,
        ] {
            assert!(one(&d, ok).is_some(), "{ok}");
            assert!(surrogates_paired(ok), "{ok}");
        }
        for bad in [
            r#"{"type":"search","user":"u","time":0,"query":"\uD800"}"#,
            r#"{"type":"search","user":"u","time":0,"query":"\\\udfff"}"#,
            r#"{"type":"search","user":"u","time":0,"query":"q","x":"\ude00\ud83d"}"#,
        ] {
            assert!(one(&d, bad).is_none(), "{bad}");
            assert!(!surrogates_paired(bad), "{bad}");
        }
    }

    #[test]
    fn reads_a_layout() {
        let d = layout(
            &[("user", "anon"), ("type", "event")],
            &[("search", "q"), ("nope", "x")],
            &["v", "p"],
        );
        let ev = one(
            &d,
            r#"{"event":"q","anon":5,"user":[],"time":0,"query":"a","p":1.5,"v":true}"#,
        )
        .unwrap();
        assert_eq!((ev.kind, ev.user.as_str()), (SEARCH, "5"));
        assert_eq!(
            ev.dims.as_deref(),
            Some(&[Dim::Bool(true), Dim::Float(1.5)][..])
        );
        let ev = one(
            &d,
            r#"{"event":"app_open","anon":"u","time":0,"v":"x","p":null}"#,
        )
        .unwrap();
        assert_eq!(
            ev.dims.as_deref(),
            Some(&[Dim::Str("x".into()), Dim::Null][..])
        );
        let ev = one(&d, r#"{"event":"app_open","anon":"u","time":0,"p":-3}"#).unwrap();
        assert_eq!(ev.dims.as_deref(), Some(&[Dim::Null, Dim::Int(-3)][..]));
        assert!(one(&d, r#"{"type":"q","anon":5,"time":0,"query":"a"}"#).is_none());
        assert!(one(&d, r#"{"event":"x","anon":5,"time":0}"#).is_none());
        assert!(one(&d, r#"{"event":"app_open","anon":"u","time":0,"v":[]}"#).is_none());
    }

    #[test]
    fn defers_every_line_of_a_colliding_layout() {
        let line = r#"{"type":"app_open","user":"u","time":0}"#;
        assert!(one(&layout(&[], &[], &[]), line).is_some());
        assert!(one(&layout(&[("user", "item")], &[], &[]), line).is_none());
        assert!(one(&layout(&[], &[("search", "click")], &[]), line).is_none());
        assert!(one(&layout(&[], &[], &["user"]), line).is_none());
        assert!(one(&layout(&[], &[], &["d", "d"]), line).is_none());
        let bad_unit = LineDecoder::new(Layout {
            unit: "days".into(),
            ..Layout::default()
        })
        .unwrap();
        assert!(one(&bad_unit, line).is_none());
    }

    #[test]
    fn survives_deep_nesting() {
        let d = plain();
        let deep = format!(
            r#"{{"type":"app_open","user":"u","time":0,"x":{}}}"#,
            "[".repeat(100_000)
        );
        assert!(one(&d, &deep).is_none());
        let nested = format!(
            r#"{{"type":"app_open","user":"u","time":0,"x":{}1{}}}"#,
            "[".repeat(50),
            "]".repeat(50)
        );
        assert!(one(&d, &nested).is_some());
    }
}
