//! A field's raw JSON text (`&RawValue`) read as msgspec reads it, or `None` when
//! this crate is not sure it would read it the same (the caller defers the line).
//!
//! The fields the event uses are kept raw during the one pass over the object and
//! read here once the `type` says what they must be. Raw text keeps integers exact
//! (serde's visitors hand an integer past u64 over as an f64, and `-0` as `-0.0`),
//! and floats go through `str::parse`, correctly rounded as msgspec's parser is.

use std::borrow::Cow;

/// A JSON scalar as msgspec gives it to Python (integers within i64 only).
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
}

/// The scalar a raw value spells; `None` for an array or object, an integer past
/// i64 (msgspec keeps it exact, Python's `int`, which is rare enough to defer), a
/// float msgspec refuses (`1e400`: out of range), or a string with an escape
/// serde_json will not decode (a lone surrogate).
pub fn scalar(raw: &str) -> Option<Scalar<'_>> {
    let b = raw.as_bytes();
    Some(match *b.first()? {
        b'"' => Scalar::Str(string(raw)?),
        b't' => Scalar::Bool(true),
        b'f' => Scalar::Bool(false),
        b'n' => Scalar::Null,
        b'-' | b'0'..=b'9' => number(raw)?,
        _ => return None,
    })
}

/// A JSON number: a float when it has a fraction or an exponent (as msgspec), else
/// an integer.
fn number(raw: &str) -> Option<Scalar<'_>> {
    if raw.bytes().any(|c| matches!(c, b'.' | b'e' | b'E')) {
        let v: f64 = raw.parse().ok()?;
        v.is_finite().then_some(Scalar::Float(v))
    } else {
        raw.parse().ok().map(Scalar::Int)
    }
}

/// A string literal's text, borrowed unless it has escapes.
pub fn string(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.bytes().any(|c| c == b'\\' || c < 0x20) {
        return Some(Cow::Borrowed(inner));
    }
    // The cold path: serde_json decodes the escapes (and refuses a lone surrogate,
    // which msgspec refuses too).
    serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
}

/// A `str` field: the text, `None` for anything else.
pub fn text(raw: &str) -> Option<String> {
    string(raw).map(Cow::into_owned)
}

/// A `str | None` field (absent is `None`): `Some(value)`, or `None` for another type.
pub fn optional_text(raw: Option<&str>) -> Option<Option<String>> {
    match raw {
        None | Some("null") => Some(None),
        Some(raw) => text(raw).map(Some),
    }
}

/// A `float | None` field: a JSON integer becomes a float, as msgspec converts it.
pub fn optional_float(raw: Option<&str>) -> Option<Option<f64>> {
    match raw.map(scalar) {
        None | Some(Some(Scalar::Null)) => Some(None),
        Some(Some(Scalar::Float(v))) => Some(Some(v)),
        Some(Some(Scalar::Int(i))) => Some(Some(i as f64)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_scalars_as_msgspec() {
        assert_eq!(scalar("-0"), Some(Scalar::Int(0)));
        assert_eq!(scalar("-0.0"), Some(Scalar::Float(-0.0)));
        assert_eq!(scalar("1e2"), Some(Scalar::Float(100.0)));
        assert_eq!(scalar("1e400"), None);
        assert_eq!(scalar("1e-400"), Some(Scalar::Float(0.0)));
        assert_eq!(scalar("9223372036854775807"), Some(Scalar::Int(i64::MAX)));
        assert_eq!(scalar("9223372036854775808"), None);
        assert_eq!(scalar("[1]"), None);
        assert_eq!(scalar("{}"), None);
        assert_eq!(scalar("true"), Some(Scalar::Bool(true)));
        assert_eq!(scalar("null"), Some(Scalar::Null));
    }

    #[test]
    fn reads_strings() {
        assert_eq!(string(r#""dogs""#), Some(Cow::Borrowed("dogs")));
        assert_eq!(
            string(r#""a\"b\u00e9\ud83d\ude00""#).unwrap(),
            "a\"b\u{e9}\u{1f600}"
        );
        assert_eq!(string(r#""\ud800""#), None);
        assert_eq!(string("5"), None);
        assert_eq!(optional_text(Some("null")), Some(None));
        assert_eq!(optional_text(Some("1")), None);
        assert_eq!(optional_float(Some("-0")), Some(Some(0.0)));
        assert_eq!(optional_float(Some("2")), Some(Some(2.0)));
        assert_eq!(optional_float(Some("true")), None);
    }
}
