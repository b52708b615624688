//! The same event with `#[derive(Deserialize)]`: one flat struct of every field.
//!
//! Simpler, and as fast, but not the Python core's rules: a field the event's type does
//! not use still has to have the right JSON type (`{"type": "search", "items": 5, ...}`
//! is refused; msgspec ignores `items` on a search), and a repeated key is an error
//! (`duplicate field`; msgspec keeps the last). Measured beside [`crate::events`].

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::events::{Event, Kind, Payload, time_of};
use crate::scalar::{Scalar, ScalarField, Visited};
use crate::time::Unit;

/// A string borrowed from the input when it has no escapes. serde's own
/// `#[serde(borrow)] Cow<str>` only borrows as a direct field, not inside `Option` or
/// `Vec`, where it always allocates; `&str` fails on any escaped string.
#[derive(Debug)]
pub struct Str<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

#[derive(Deserialize)]
pub struct Flat<'a> {
    #[serde(rename = "type", borrow)]
    tag: Str<'a>,
    #[serde(borrow)]
    user: Visited<'a>,
    #[serde(borrow)]
    time: Visited<'a>,
    #[serde(borrow, default)]
    query: Option<Str<'a>>,
    #[serde(borrow, default)]
    items: Option<Vec<Str<'a>>>,
    #[serde(borrow, default)]
    item: Option<Str<'a>>,
    #[serde(default)]
    rank: Option<i64>,
    #[serde(borrow, default)]
    search_id: Option<Str<'a>>,
    #[serde(default)]
    value: Option<f64>,
    #[serde(borrow, default)]
    currency: Option<Str<'a>>,
    #[serde(borrow, default)]
    kind: Option<Str<'a>>,
}

impl<'a> Flat<'a> {
    pub fn event(self, unit: Unit) -> Result<Event<'a>, String> {
        let tag = self.tag.0;
        let kind = Kind::from_tag(&tag).ok_or_else(|| format!("unknown event type {tag:?}"))?;
        let user = match self.user.scalar() {
            Ok(Scalar::Str(s)) => s,
            Ok(Scalar::Int { value, .. }) => Cow::Owned(value.to_string()),
            Ok(Scalar::BigInt(text)) => text,
            _ => return Err("user: not a string or an integer".into()),
        };
        let time_us = match self.time.scalar() {
            Ok(v) => time_of(&v, unit).ok_or("time: not a string or a number")?,
            Err(e) => return Err(e.into()),
        }
        .map_err(|bad| format!("bad time: {bad:?}"))?;
        let missing = |name: &str| format!("missing field `{name}`");
        let payload = match kind {
            Kind::AppOpen | Kind::AppClose => Payload::None,
            Kind::Search => Payload::Query(self.query.ok_or_else(|| missing("query"))?.0),
            Kind::Results => {
                let items = self.items.ok_or_else(|| missing("items"))?;
                Payload::Items(items.into_iter().map(|s| s.0).collect())
            }
            Kind::Click => {
                if self.rank.is_some_and(|r| r < 1) {
                    return Err("rank: not >= 1".into());
                }
                let item = self.item.ok_or_else(|| missing("item"))?.0;
                Payload::Click {
                    item,
                    rank: self.rank,
                }
            }
            Kind::Conversion => Payload::Conversion {
                item: self.item.map(|s| s.0),
                value: self.value,
                kind: match &*tag {
                    "purchase" | "add_to_cart" => Some(Cow::Owned(tag.clone().into_owned())),
                    _ => self.kind.map(|s| s.0),
                },
            },
        };
        let _ = self.currency;
        let search_id = match kind {
            Kind::AppOpen | Kind::AppClose => None,
            _ => self.search_id.map(|s| s.0),
        };
        Ok(Event {
            time_us,
            kind,
            user,
            payload,
            search_id,
        })
    }
}
