//! Input events: one JSON object per line, decoded once into a typed [`Event`],
//! with the Python core's rules (`core/schema.py`, `core/events.py`, msgspec's).
//!
//! msgspec picks the struct by the `type` tag wherever it sits in the object, and a
//! field that the chosen type does not have is ignored whatever its value. So the
//! object is read in one pass into [`Fields`] (every known key, loosely typed,
//! strings borrowed from the input), and the type then decides which fields must be
//! there and what they must be. A repeated key keeps its last value, as in msgspec.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::scalar::{JsonType, Scalar, ScalarField, ScalarVisitor};
use crate::time::{self, Unit};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    AppOpen,
    Search,
    Results,
    Click,
    AppClose,
    Conversion,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::AppOpen,
        Kind::Search,
        Kind::Results,
        Kind::Click,
        Kind::AppClose,
        Kind::Conversion,
    ];

    /// The kind a `type` tag names: ours, the tutorial's class names, conversion kinds.
    pub fn from_tag(tag: &str) -> Option<Kind> {
        Some(match tag {
            "app_open" | "AppOpen" => Kind::AppOpen,
            "search" | "Search" => Kind::Search,
            "results" | "Results" => Kind::Results,
            "click" | "ClickResult" => Kind::Click,
            "app_close" | "AppClose" => Kind::AppClose,
            "conversion" | "purchase" | "add_to_cart" => Kind::Conversion,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        [
            "app_open",
            "search",
            "results",
            "click",
            "app_close",
            "conversion",
        ][self as usize]
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Payload<'a> {
    None,
    Query(Cow<'a, str>),
    Items(Vec<Cow<'a, str>>),
    Click {
        item: Cow<'a, str>,
        rank: Option<i64>,
    },
    Conversion {
        item: Option<Cow<'a, str>>,
        value: Option<f64>,
        kind: Option<Cow<'a, str>>,
    },
}

/// A decoded event: the Python core's event tuple without its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Event<'a> {
    pub time_us: i64,
    pub kind: Kind,
    pub user: Cow<'a, str>,
    pub payload: Payload<'a>,
    pub search_id: Option<Cow<'a, str>>,
}

/// The known keys; anything else is skipped unread.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Type,
    User,
    Time,
    Query,
    Items,
    Item,
    Rank,
    SearchId,
    Value,
    Currency,
    ConvKind,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "type" => Key::Type,
                    "user" => Key::User,
                    "time" => Key::Time,
                    "query" => Key::Query,
                    "items" => Key::Items,
                    "item" => Key::Item,
                    "rank" => Key::Rank,
                    "search_id" => Key::SearchId,
                    "value" => Key::Value,
                    "currency" => Key::Currency,
                    "kind" => Key::ConvKind,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// `items`: the strings, or the type of the first element (and its index) that is not.
enum Items<'a> {
    Strs(Vec<Cow<'a, str>>),
    BadElement(usize, JsonType),
    Not(JsonType),
}

impl<'de> Deserialize<'de> for Items<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ItemsVisitor;
        impl<'de> Visitor<'de> for ItemsVisitor {
            type Value = Items<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Items<'de>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(8));
                let mut bad = None;
                while let Some(v) = seq.next_element_seed(Loose)? {
                    match v {
                        Scalar::Str(s) if bad.is_none() => out.push(s),
                        other if bad.is_none() => bad = Some((out.len(), other.json_type())),
                        _ => {}
                    }
                }
                Ok(bad.map_or(Items::Strs(out), |(i, t)| Items::BadElement(i, t)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Items<'de>, A::Error> {
                ScalarVisitor
                    .visit_map(map)
                    .map(|_| Items::Not(JsonType::Object))
            }
            fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Items<'de>, E> {
                Ok(Items::Not(JsonType::Str))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Items<'de>, E> {
                Ok(Items::Not(JsonType::Str))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Items<'de>, E> {
                Ok(Items::Not(JsonType::Int))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Items<'de>, E> {
                Ok(Items::Not(JsonType::Int))
            }
            fn visit_i128<E: de::Error>(self, _: i128) -> Result<Items<'de>, E> {
                Ok(Items::Not(JsonType::Int))
            }
            fn visit_u128<E: de::Error>(self, _: u128) -> Result<Items<'de>, E> {
                Ok(Items::Not(JsonType::Int))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Items<'de>, E> {
                Ok(Items::Not(JsonType::Float))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Items<'de>, E> {
                Ok(Items::Not(JsonType::Bool))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Items<'de>, E> {
                Ok(Items::Not(JsonType::Null))
            }
        }
        d.deserialize_any(ItemsVisitor)
    }
}

/// A seed that reads any value into a [`Scalar`].
struct Loose;

impl<'de> de::DeserializeSeed<'de> for Loose {
    type Value = Scalar<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Scalar<'de>, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// Every known key of one object, read in one pass (`S` reads `user` and `time`).
/// Each key remembers where it first appeared, so that the error reported is the one
/// on the earliest key, as msgspec (which stops there) reports it.
#[derive(Default)]
struct Fields<'a> {
    tag: Option<Scalar<'a>>,
    /// A later `type` key differing from the first (msgspec refuses that).
    tag_conflict: Option<Scalar<'a>>,
    user: Option<(u16, Result<Scalar<'a>, &'static str>)>,
    time: Option<(u16, Result<Scalar<'a>, &'static str>)>,
    search_id: Field<'a>,
    rest: Rest<'a>,
}

/// A key's first position and its last value.
type Field<'a> = Option<(u16, Scalar<'a>)>;

/// The fields only some event types have.
#[derive(Default)]
struct Rest<'a> {
    query: Field<'a>,
    items: Option<(u16, Items<'a>)>,
    item: Field<'a>,
    rank: Field<'a>,
    value: Field<'a>,
    currency: Field<'a>,
    conv_kind: Field<'a>,
}

/// Reads one JSON object into an event: `Ok(Ok(event))`, `Ok(Err(reason))` for a
/// well-formed object that is not a valid event, `Err` for what the parser refuses.
/// The loosely typed fields stay on the visitor's stack; only the event moves.
pub struct EventSeed<S> {
    unit: Unit,
    _s: PhantomData<S>,
}

impl<S> EventSeed<S> {
    pub fn new(unit: Unit) -> Self {
        EventSeed {
            unit,
            _s: PhantomData,
        }
    }
}

impl<'de, S: ScalarField<'de>> de::DeserializeSeed<'de> for EventSeed<S> {
    type Value = Result<Event<'de>, String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(FieldsVisitor::<S>(self.unit, PhantomData))
    }
}

struct FieldsVisitor<S>(Unit, PhantomData<S>);

fn not_object<E: de::Error>(t: JsonType) -> E {
    E::custom(format_args!(
        "not a JSON object: Expected `object`, got `{}`",
        t.name()
    ))
}

impl<'de, S: ScalarField<'de>> Visitor<'de> for FieldsVisitor<S> {
    type Value = Result<Event<'de>, String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut f = Fields::default();
        let mut pos: u16 = 0;
        while let Some(key) = map.next_key::<Key>()? {
            pos = pos.saturating_add(1);
            // The first position of a key, kept across repeats.
            macro_rules! put {
                ($slot:expr, $v:expr) => {{
                    let v = $v;
                    let at = $slot.as_ref().map_or(pos, |(p, _)| *p);
                    $slot = Some((at, v));
                }};
            }
            match key {
                Key::Type => {
                    let v = map.next_value_seed(Loose)?;
                    match &f.tag {
                        None => f.tag = Some(v),
                        Some(first) if *first != v => f.tag_conflict = Some(v),
                        Some(_) => {}
                    }
                }
                Key::User => put!(f.user, map.next_value::<S>()?.scalar()),
                Key::Time => put!(f.time, map.next_value::<S>()?.scalar()),
                Key::Query => put!(f.rest.query, map.next_value_seed(Loose)?),
                Key::Items => put!(f.rest.items, map.next_value::<Items>()?),
                Key::Item => put!(f.rest.item, map.next_value_seed(Loose)?),
                Key::Rank => put!(f.rest.rank, map.next_value_seed(Loose)?),
                Key::SearchId => put!(f.search_id, map.next_value_seed(Loose)?),
                Key::Value => put!(f.rest.value, map.next_value_seed(Loose)?),
                Key::Currency => put!(f.rest.currency, map.next_value_seed(Loose)?),
                Key::ConvKind => put!(f.rest.conv_kind, map.next_value_seed(Loose)?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(f.event(self.0))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(not_object(JsonType::Array))
    }
    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
        Err(not_object(JsonType::Str))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(not_object(JsonType::Str))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(not_object(JsonType::Int))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(not_object(JsonType::Int))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(not_object(JsonType::Float))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(not_object(JsonType::Bool))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(not_object(JsonType::Null))
    }
}

/// A `time` value in microseconds as the Python core reads it; `None` when it is
/// neither a string nor a number.
pub fn time_of(value: &Scalar, unit: Unit) -> Option<Result<i64, time::BadTime>> {
    Some(match value {
        Scalar::Str(s) => time::from_str(s, unit),
        Scalar::Int { value, .. } => time::from_int(*value as i128, unit),
        // Past i128 every unit is out of range.
        Scalar::BigInt(text) => text
            .parse()
            .map_or(Err(time::BadTime::OutOfRange), |v| time::from_int(v, unit)),
        Scalar::Float(v) => time::from_float(*v, unit),
        Scalar::Other(_) => return None,
    })
}

/// Why a well-formed JSON object is not a valid event, in msgspec's words.
fn expected(want: &str, got: JsonType, at: &str) -> String {
    format!("Expected `{want}`, got `{}` - at `$.{at}`", got.name())
}

fn missing(name: &str) -> String {
    format!("Object missing required field `{name}`")
}

/// Every reason an event is refused for, with the position of the key it is about:
/// msgspec stops at the first, in the order of the keys.
#[derive(Default)]
struct Problems(Vec<(u16, String)>);

impl Problems {
    fn add(&mut self, at: u16, reason: String) {
        self.0.push((at, reason));
    }

    fn first(mut self) -> Option<String> {
        self.0.sort_by_key(|(at, _)| *at);
        self.0.into_iter().next().map(|(_, reason)| reason)
    }

    /// A string field (`str`), or one that may also be null or absent (`str | null`).
    fn string<'a>(&mut self, field: Field<'a>, nullable: bool, name: &str) -> Option<Cow<'a, str>> {
        match field {
            None => None,
            Some((_, Scalar::Other(JsonType::Null))) if nullable => None,
            Some((_, Scalar::Str(s))) => Some(s),
            Some((at, other)) => {
                let want = if nullable { "str | null" } else { "str" };
                self.add(at, expected(want, other.json_type(), name));
                None
            }
        }
    }
}

impl<'a> Fields<'a> {
    /// The event, or the one-line reason the Python core would give (the wording
    /// differs for JSON the parser refuses and for bad times: README).
    fn event(self, unit: Unit) -> Result<Event<'a>, String> {
        let tag = match self.tag {
            None => return Err(missing("type")),
            Some(Scalar::Str(tag)) => tag,
            Some(other) => return Err(expected("str", other.json_type(), "type")),
        };
        let unknown =
            |tag: &str| format!("unknown event type: Invalid value '{tag}' - at `$.type`");
        let kind = Kind::from_tag(&tag).ok_or_else(|| unknown(&tag))?;
        if let Some(Scalar::Str(other)) = &self.tag_conflict {
            return Err(unknown(other));
        }
        let mut problems = Problems::default();
        let user = user(self.user, &mut problems);
        let time = match self.time {
            Some((at, Ok(value))) => time_of(&value, unit).or_else(|| {
                let reason = expected("int | float | str", value.json_type(), "time");
                problems.add(at, reason);
                None
            }),
            Some((at, Err(reason))) => {
                problems.add(at, format!("{reason} - at `$.time`"));
                None
            }
            None => None,
        };
        let search_id = match kind {
            Kind::AppOpen | Kind::AppClose => None,
            _ => problems.string(self.search_id, true, "search_id"),
        };
        let payload = self.rest.payload(kind, &tag, &mut problems);
        if let Some(reason) = problems.first() {
            return Err(reason);
        }
        let user = user.ok_or_else(|| missing("user"))?;
        let time = time.ok_or_else(|| missing("time"))?;
        let payload = payload.ok_or_else(|| missing(kind.required()))?;
        let time_us = time.map_err(|bad| format!("bad time: {bad:?}"))?;
        Ok(Event {
            time_us,
            kind,
            user,
            payload,
            search_id,
        })
    }
}

/// The user as text: a string, or an integer's decimal digits (`7` is `"7"`).
fn user<'a>(
    field: Option<(u16, Result<Scalar<'a>, &'static str>)>,
    problems: &mut Problems,
) -> Option<Cow<'a, str>> {
    match field? {
        (_, Ok(Scalar::Str(s))) => Some(s),
        (_, Ok(Scalar::Int { value, text })) => {
            Some(text.map_or_else(|| Cow::Owned(value.to_string()), Cow::Borrowed))
        }
        (_, Ok(Scalar::BigInt(text))) => Some(text),
        (at, Ok(other)) => {
            problems.add(at, expected("int | str", other.json_type(), "user"));
            None
        }
        (at, Err(reason)) => {
            problems.add(at, format!("{reason} - at `$.user`"));
            None
        }
    }
}

impl Kind {
    /// The field the payload of this kind cannot do without.
    fn required(self) -> &'static str {
        match self {
            Kind::Search => "query",
            Kind::Results => "items",
            _ => "item",
        }
    }
}

impl<'a> Rest<'a> {
    /// The payload of a `kind` event; `None` when a required field is missing (or
    /// wrong, in which case `problems` says so).
    fn payload(self, kind: Kind, tag: &str, problems: &mut Problems) -> Option<Payload<'a>> {
        Some(match kind {
            Kind::AppOpen | Kind::AppClose => Payload::None,
            Kind::Search => Payload::Query(problems.string(self.query, false, "query")?),
            Kind::Results => Payload::Items(items(self.items, problems)?),
            Kind::Click => {
                let rank = rank(self.rank, problems);
                let item = problems.string(self.item, false, "item")?;
                Payload::Click { item, rank }
            }
            Kind::Conversion => {
                let item = problems.string(self.item, true, "item");
                let _currency = problems.string(self.currency, true, "currency");
                let conv_kind = problems.string(self.conv_kind, true, "kind");
                let value = value(self.value, problems);
                let kind = match tag {
                    "purchase" | "add_to_cart" => Some(Cow::Owned(tag.to_owned())),
                    _ => conv_kind,
                };
                Payload::Conversion { item, value, kind }
            }
        })
    }
}

fn items<'a>(
    field: Option<(u16, Items<'a>)>,
    problems: &mut Problems,
) -> Option<Vec<Cow<'a, str>>> {
    match field? {
        (_, Items::Strs(v)) => Some(v),
        (at, Items::BadElement(i, t)) => {
            problems.add(at, expected("str", t, &format!("items[{i}]")));
            None
        }
        (at, Items::Not(t)) => {
            problems.add(at, expected("array", t, "items"));
            None
        }
    }
}

/// A click's rank: an integer >= 1, or null.
fn rank(field: Field, problems: &mut Problems) -> Option<i64> {
    match field? {
        (_, Scalar::Other(JsonType::Null)) => None,
        (_, Scalar::Int { value, .. }) if value >= 1 => Some(value),
        (at, Scalar::Int { .. } | Scalar::BigInt(_)) => {
            problems.add(at, "Expected `int` >= 1 - at `$.rank`".into());
            None
        }
        (at, other) => {
            problems.add(at, expected("int | null", other.json_type(), "rank"));
            None
        }
    }
}

/// A conversion's value: a number (an integer becomes a float), or null.
fn value(field: Field, problems: &mut Problems) -> Option<f64> {
    match field? {
        (_, Scalar::Other(JsonType::Null)) => None,
        (_, Scalar::Float(v)) => Some(v),
        (_, Scalar::Int { value, .. }) => Some(value as f64),
        (_, Scalar::BigInt(text)) => text.parse().ok(),
        (at, other) => {
            problems.add(at, expected("float | null", other.json_type(), "value"));
            None
        }
    }
}
