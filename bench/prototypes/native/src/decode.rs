//! A block of JSON Lines to events, with each of the JSON crates measured.

use serde::de::DeserializeSeed;
use serde_json::value::RawValue;
use sonic_rs::LazyValue;

use crate::derive::Flat;
use crate::events::{Event, EventSeed};
use crate::scalar::Visited;
use crate::time::Unit;

/// UTF-8's byte-order mark: skipped before a file's first line (issue #21, item 4).
const BOM: &[u8] = b"\xef\xbb\xbf";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parser {
    /// serde_json, `user` and `time` as `&RawValue` (exact integers).
    SerdeJson,
    /// serde_json, `user` and `time` through a visitor (integers past u64 become f64).
    SerdeJsonVisit,
    /// simd-json's serde deserializer on a mutable copy (integers to i128/u128).
    SimdJson,
    /// sonic-rs, `user` and `time` as `LazyValue` (exact integers).
    SonicRs,
    /// sonic-rs, `user` and `time` through a visitor (integers past u64 become f64).
    SonicRsVisit,
    /// `#[derive(Deserialize)]` flat structs (not the Python core's rules; see derive.rs).
    SerdeJsonDerive,
    SimdJsonDerive,
    SonicRsDerive,
}

impl Parser {
    pub const ALL: [Parser; 8] = [
        Parser::SerdeJson,
        Parser::SerdeJsonVisit,
        Parser::SimdJson,
        Parser::SonicRs,
        Parser::SonicRsVisit,
        Parser::SerdeJsonDerive,
        Parser::SimdJsonDerive,
        Parser::SonicRsDerive,
    ];

    /// The parsers that follow the Python core's rules exactly, one per crate.
    pub const EXACT: [Parser; 3] = [Parser::SerdeJson, Parser::SimdJson, Parser::SonicRs];

    pub fn name(self) -> &'static str {
        match self {
            Parser::SerdeJson => "serde_json",
            Parser::SerdeJsonVisit => "serde_json-visit",
            Parser::SimdJson => "simd_json",
            Parser::SonicRs => "sonic_rs",
            Parser::SonicRsVisit => "sonic_rs-visit",
            Parser::SerdeJsonDerive => "serde_json-derive",
            Parser::SimdJsonDerive => "simd_json-derive",
            Parser::SonicRsDerive => "sonic_rs-derive",
        }
    }

    pub fn parse(name: &str) -> Option<Parser> {
        Parser::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// A line that is only whitespace (Python's `bytes.isspace` on the line with its
/// newline): skipped, not invalid.
fn is_blank(line: &[u8]) -> bool {
    line.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c))
}

/// The lines of `buf` as `(number, start, end)`, 1-based, without their newline.
fn lines(buf: &[u8]) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', buf).chain(std::iter::once(buf.len()));
    let mut number = 0;
    std::iter::from_fn(move || {
        let end = ends.next()?;
        if end == buf.len() && start == end {
            return None;
        }
        let line = (number + 1, start, end);
        number += 1;
        start = end + 1;
        Some(line)
    })
}

/// The line as text: msgspec refuses bytes that are not UTF-8, and serde_json and
/// sonic-rs then skip their own checks on every string (`from_str`, not `from_slice`).
fn utf8(line: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(line)
        .map_err(|e| format!("not UTF-8 (invalid byte at byte {})", e.valid_up_to()))
}

fn decode_one<'a>(parser: Parser, line: &'a [u8], unit: Unit) -> Result<Event<'a>, String> {
    let text = utf8(line)?;
    match parser {
        Parser::SerdeJson => serde_json_seed(EventSeed::<&RawValue>::new(unit), text),
        Parser::SerdeJsonVisit => serde_json_seed(EventSeed::<Visited>::new(unit), text),
        Parser::SonicRs => sonic_seed(EventSeed::<LazyValue>::new(unit), text),
        Parser::SonicRsVisit => sonic_seed(EventSeed::<Visited>::new(unit), text),
        Parser::SerdeJsonDerive => serde_json::from_str::<Flat>(text)
            .map_err(|e| e.to_string())?
            .event(unit),
        Parser::SonicRsDerive => sonic_rs::from_str::<Flat>(text)
            .map_err(|e| e.to_string())?
            .event(unit),
        Parser::SimdJson | Parser::SimdJsonDerive => unreachable!("simd-json decodes in place"),
    }
}

fn serde_json_seed<'a, T>(seed: T, text: &'a str) -> Result<Event<'a>, String>
where
    T: DeserializeSeed<'a, Value = Result<Event<'a>, String>>,
{
    let mut de = serde_json::Deserializer::from_str(text);
    let event = seed.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    event
}

fn sonic_seed<'a, T>(seed: T, text: &'a str) -> Result<Event<'a>, String>
where
    T: DeserializeSeed<'a, Value = Result<Event<'a>, String>>,
{
    let mut de = sonic_rs::Deserializer::from_str(text);
    let event = seed.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    event
}

/// Decodes every line of `buf`, calling `each(line_number, event or reason)` for each
/// line that is not blank.
pub fn decode_all<F>(parser: Parser, buf: &[u8], unit: Unit, mut each: F)
where
    F: for<'x> FnMut(usize, Result<Event<'x>, String>),
{
    if matches!(parser, Parser::SimdJson | Parser::SimdJsonDerive) {
        return decode_simd(buf, unit, parser == Parser::SimdJsonDerive, each);
    }
    for (number, start, end) in lines(buf) {
        let mut line = &buf[start..end];
        if number == 1 && line.starts_with(BOM) {
            line = &line[BOM.len()..];
        }
        if is_blank(line) {
            continue;
        }
        each(number, decode_one(parser, line, unit));
    }
}

/// simd-json rewrites strings in its input, so it works on a copy of the block (the
/// original stays intact for the dead-letter output), one line at a time.
fn decode_simd<F>(buf: &[u8], unit: Unit, derive: bool, mut each: F)
where
    F: for<'x> FnMut(usize, Result<Event<'x>, String>),
{
    let mut copy = buf.to_vec();
    let mut buffers = simd_json::Buffers::new(4096);
    let mut rest: &mut [u8] = &mut copy;
    for (number, start, end) in lines(buf) {
        let taken = std::mem::take(&mut rest);
        let (line, tail) = taken.split_at_mut(end - start);
        rest = tail.get_mut(1..).unwrap_or_default();
        let line = if number == 1 && line.starts_with(BOM) {
            &mut line[BOM.len()..]
        } else {
            line
        };
        if is_blank(line) {
            continue;
        }
        let result = if derive {
            simd_json::serde::from_slice_with_buffers::<Flat>(line, &mut buffers)
                .map_err(|e| e.to_string())
                .and_then(|f| f.event(unit))
        } else {
            simd_json::Deserializer::from_slice_with_buffers(line, &mut buffers)
                .map_err(|e| e.to_string())
                .and_then(|mut de| {
                    EventSeed::<Visited>::new(unit)
                        .deserialize(&mut de)
                        .map_err(|e| e.to_string())
                })
                .and_then(|event| event)
        };
        each(number, result);
    }
}

/// The JSON floor: each line parsed and validated into `IgnoredAny`, nothing kept.
/// Returns the lines that parsed.
pub fn skip_all(parser: Parser, buf: &[u8]) -> usize {
    use serde::de::IgnoredAny;
    let mut copy = Vec::new();
    let mut buffers = simd_json::Buffers::new(4096);
    let mut ok = 0;
    for (_, start, end) in lines(buf) {
        let line = &buf[start..end];
        ok += match parser {
            Parser::SimdJson | Parser::SimdJsonDerive => {
                copy.clear();
                copy.extend_from_slice(line);
                simd_json::serde::from_slice_with_buffers::<IgnoredAny>(&mut copy, &mut buffers)
                    .is_ok()
            }
            Parser::SonicRs | Parser::SonicRsVisit | Parser::SonicRsDerive => {
                sonic_rs::from_slice::<IgnoredAny>(line).is_ok()
            }
            _ => serde_json::from_slice::<IgnoredAny>(line).is_ok(),
        } as usize;
    }
    ok
}

/// Every line's `time` value, raw, for timing the time rules alone.
pub fn raw_times(buf: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct T<'a> {
        #[serde(borrow)]
        time: &'a RawValue,
    }
    lines(buf)
        .filter_map(|(_, s, e)| serde_json::from_slice::<T>(&buf[s..e]).ok())
        .map(|t| t.time.get().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Kind, Payload};

    /// Each exact parser's reading of one line: the event's (kind, user, time) or the
    /// reason it is refused.
    fn read(line: &str) -> Vec<Result<(Kind, String, i64), String>> {
        Parser::EXACT
            .iter()
            .map(|&parser| {
                let mut out = None;
                decode_all(parser, line.as_bytes(), Unit::Auto, |_, r| {
                    out = Some(r.map(|e| (e.kind, e.user.into_owned(), e.time_us)));
                });
                out.expect("one line")
            })
            .collect()
    }

    fn all_ok(line: &str, kind: Kind, user: &str, time_us: i64) {
        for got in read(line) {
            assert_eq!(got, Ok((kind, user.to_owned(), time_us)), "{line}");
        }
    }

    fn all_refuse(line: &str, reason: &str) {
        for got in read(line) {
            assert_eq!(got, Err(reason.to_owned()), "{line}");
        }
    }

    #[test]
    fn msgspec_rules() {
        // The tag anywhere, an alias, an integer user, the last repeated key.
        all_ok(
            r#"{"user":7,"time":0,"query":"q","type":"Search"}"#,
            Kind::Search,
            "7",
            0,
        );
        all_ok(
            r#"{"type":"search","user":"a","user":"b","time":1,"query":"q"}"#,
            Kind::Search,
            "b",
            1_000_000,
        );
        // A field the type does not have is ignored, whatever its value.
        all_ok(
            r#"{"type":"search","user":-0,"time":0,"query":"q","items":5}"#,
            Kind::Search,
            "0",
            0,
        );
        all_ok(
            r#"{"type":"app_open","user":123456789012345678901234567890,"time":"1970-01-01T02:00+02:00"}"#,
            Kind::AppOpen,
            "123456789012345678901234567890",
            0,
        );
        all_refuse(
            r#"{"type":"search","user":"a","time":0,"query":null}"#,
            "Expected `str`, got `null` - at `$.query`",
        );
        all_refuse(
            r#"{"type":"click","user":"a","time":0,"item":"x","rank":0}"#,
            "Expected `int` >= 1 - at `$.rank`",
        );
        all_refuse(
            r#"{"type":"search","user":1.5,"time":0}"#,
            "Expected `int | str`, got `float` - at `$.user`",
        );
        all_refuse(
            r#"{"type":"search","user":"a","time":0}"#,
            "Object missing required field `query`",
        );
        all_refuse(
            r#"{"type":"nope","user":"a","time":0}"#,
            "unknown event type: Invalid value 'nope' - at `$.type`",
        );
    }

    #[test]
    fn lines_and_payloads() {
        let text = b"\xef\xbb\xbf{\"type\":\"results\",\"user\":\"u\",\"time\":0,\"items\":[\"a\",\"b\\\"c\"]}\n \t\r\n\n{\"type\":\"app_close\",\"user\":\"u\",\"time\":0}";
        for parser in Parser::EXACT {
            let mut seen = Vec::new();
            decode_all(parser, text, Unit::Auto, |line, r| {
                let ev = r.expect("valid");
                if let Payload::Items(items) = &ev.payload {
                    assert_eq!(items, &["a", "b\"c"]);
                }
                seen.push((line, ev.kind));
            });
            assert_eq!(
                seen,
                [(1, Kind::Results), (4, Kind::AppClose)],
                "{parser:?}"
            );
        }
    }
}
