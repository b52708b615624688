//! The `user` and `time` fields: a string or a number, kept exact.
//!
//! msgspec gives Python an `int` of any size (up to 4300 digits), so an integer user
//! is its exact decimal text and an integer nanosecond time is floored exactly.
//! serde_json and sonic-rs read an integer past u64 as an f64, so with them these
//! two fields are taken as raw JSON text (`&RawValue`, `LazyValue`) and read here;
//! simd-json (feature `128bit`) hands over i128/u128 and fails past that.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A JSON value's type, as msgspec names it in its errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonType {
    Str,
    Int,
    Float,
    Bool,
    Null,
    Array,
    Object,
}

impl JsonType {
    pub fn name(self) -> &'static str {
        match self {
            JsonType::Str => "str",
            JsonType::Int => "int",
            JsonType::Float => "float",
            JsonType::Bool => "bool",
            JsonType::Null => "null",
            JsonType::Array => "array",
            JsonType::Object => "object",
        }
    }
}

/// A field's value, typed loosely: the event's type decides later what it must be.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar<'a> {
    Str(Cow<'a, str>),
    /// An integer; `text` is its literal when the parser kept it (zero-copy users).
    Int {
        value: i64,
        text: Option<&'a str>,
    },
    /// An integer beyond i64 (at most 4300 digits, as msgspec), in decimal.
    BigInt(Cow<'a, str>),
    Float(f64),
    Other(JsonType),
}

impl Scalar<'_> {
    pub fn json_type(&self) -> JsonType {
        match self {
            Scalar::Str(_) => JsonType::Str,
            Scalar::Int { .. } | Scalar::BigInt(_) => JsonType::Int,
            Scalar::Float(_) => JsonType::Float,
            Scalar::Other(t) => *t,
        }
    }
}

/// Something a parser deserializes a field into that gives a [`Scalar`].
pub trait ScalarField<'de>: Deserialize<'de> {
    /// The value, or a msgspec-style reason when the number itself is refused.
    fn scalar(self) -> Result<Scalar<'de>, &'static str>;
}

/// Read by serde's visitor: exact up to what the parser hands over (i128 for
/// simd-json with `128bit`, u64 then f64 for serde_json and sonic-rs).
pub struct Visited<'de>(Scalar<'de>);

impl<'de> ScalarField<'de> for Visited<'de> {
    fn scalar(self) -> Result<Scalar<'de>, &'static str> {
        Ok(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Visited<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor).map(Visited)
    }
}

/// Deserializes any JSON value into a [`Scalar`], draining arrays and objects.
pub struct ScalarVisitor;

macro_rules! visit_int {
    ($($name:ident: $t:ty),*) => {$(
        fn $name<E: de::Error>(self, v: $t) -> Result<Self::Value, E> {
            Ok(match i64::try_from(v) {
                Ok(value) => Scalar::Int { value, text: None },
                Err(_) => Scalar::BigInt(Cow::Owned(v.to_string())),
            })
        }
    )*};
}

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    visit_int!(visit_i64: i64, visit_u64: u64, visit_i128: i128, visit_u128: u128);
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other(JsonType::Bool))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other(JsonType::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other(JsonType::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other(JsonType::Array))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other(JsonType::Object))
    }
}

/// A value's raw JSON text, read as msgspec reads it. `unescape` decodes a string
/// literal that has escapes (the cold path).
fn from_raw<'a>(
    raw: &'a str,
    unescape: impl FnOnce(&str) -> Option<String>,
) -> Result<Scalar<'a>, &'static str> {
    let bytes = raw.as_bytes();
    Ok(match bytes.first() {
        Some(b'"') if !bytes.contains(&b'\\') => Scalar::Str(Cow::Borrowed(&raw[1..raw.len() - 1])),
        Some(b'"') => Scalar::Str(Cow::Owned(unescape(raw).ok_or("invalid string")?)),
        Some(b't' | b'f') => Scalar::Other(JsonType::Bool),
        Some(b'n') => Scalar::Other(JsonType::Null),
        Some(b'[') => Scalar::Other(JsonType::Array),
        Some(b'{') => Scalar::Other(JsonType::Object),
        _ if bytes.iter().any(|&b| matches!(b, b'.' | b'e' | b'E')) => {
            let v: f64 = raw.parse().map_err(|_| "invalid number")?;
            if !v.is_finite() {
                return Err("Number out of range");
            }
            Scalar::Float(v)
        }
        _ if raw.len() - raw.starts_with('-') as usize > 4300 => {
            return Err("Integer value out of range");
        }
        _ => match raw.parse::<i64>() {
            Ok(value) => Scalar::Int {
                value,
                text: (raw != "-0").then_some(raw),
            },
            Err(_) => Scalar::BigInt(Cow::Borrowed(raw)),
        },
    })
}

impl<'de> ScalarField<'de> for &'de serde_json::value::RawValue {
    fn scalar(self) -> Result<Scalar<'de>, &'static str> {
        from_raw(self.get(), |s| serde_json::from_str(s).ok())
    }
}

impl<'de> ScalarField<'de> for sonic_rs::LazyValue<'de> {
    fn scalar(self) -> Result<Scalar<'de>, &'static str> {
        match self.as_raw_cow() {
            Cow::Borrowed(raw) => from_raw(raw, |s| sonic_rs::from_str(s).ok()),
            Cow::Owned(raw) => Ok(match from_raw(&raw, |s| sonic_rs::from_str(s).ok())? {
                Scalar::Str(s) => Scalar::Str(Cow::Owned(s.into_owned())),
                Scalar::Int { value, .. } => Scalar::Int { value, text: None },
                Scalar::BigInt(s) => Scalar::BigInt(Cow::Owned(s.into_owned())),
                Scalar::Float(v) => Scalar::Float(v),
                Scalar::Other(t) => Scalar::Other(t),
            }),
        }
    }
}
