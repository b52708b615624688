//! Rollup partial sums of search records (`core/rollups.py` `aggregate`), read from the
//! JSON lines the shard rendered, as the Python core reads them back.
//!
//! The sums are the Python core's `WindowAgg`: counts, a rank and its reciprocal kept
//! as counts per rank, times to first click and conversion values as lists, per query
//! and per dimension value (the value's JSON text). Floats are read with Rust's own
//! parser (correctly rounded, as msgspec's), not serde_json's faster one.

use std::borrow::Cow;
use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::value::RawValue;

/// What a rollup reads of a search record.
#[derive(Deserialize)]
struct Rec<'a> {
    #[serde(borrow)]
    query: Option<Cow<'a, str>>,
    clicked: bool,
    clicks: i64,
    first_click_rank: Option<u64>,
    zero_results: bool,
    abandoned: bool,
    reformulated: bool,
    long_click: bool,
    #[serde(borrow)]
    reciprocal_rank: Option<&'a RawValue>,
    #[serde(borrow)]
    time_to_first_click: Option<&'a RawValue>,
    conversions: i64,
    #[serde(borrow)]
    conversion_value: Option<&'a RawValue>,
    short_click: bool,
    #[serde(borrow)]
    dimensions: BTreeMap<Cow<'a, str>, &'a RawValue>,
}

/// `QueryAgg`.
#[derive(Debug, Default, PartialEq)]
pub struct QueryAgg {
    pub searches: i64,
    pub clicked: i64,
    pub zero: i64,
    pub rank_sum: i128,
    pub ranks: i64,
}

/// `DimensionAgg`.
#[derive(Debug, Default, PartialEq)]
pub struct DimAgg {
    pub searches: i64,
    pub clicked: i64,
    pub converted: i64,
    pub values: Vec<f64>,
    pub zero: i64,
    pub abandoned: i64,
    pub rank_sum: i128,
    pub ranks: i64,
    pub rr_ranks: BTreeMap<u64, i64>,
    pub rr_n: i64,
}

/// `WindowAgg`: queries and dimension values in the order they first came.
#[derive(Debug, Default, PartialEq)]
pub struct WindowAgg {
    pub searches: i64,
    pub clicked: i64,
    pub clicks: i64,
    pub rank_sum: i128,
    pub ranks: i64,
    pub zero: i64,
    pub abandoned: i64,
    pub reformulated: i64,
    pub long_click: i64,
    pub rr_ranks: BTreeMap<u64, i64>,
    pub rr_n: i64,
    pub ttfc: Vec<f64>,
    pub queries: Vec<(Option<String>, QueryAgg)>,
    pub conversions: i64,
    pub converted: i64,
    pub values: Vec<f64>,
    pub short_click: i64,
    pub dims: Vec<((String, String), DimAgg)>,
    /// Where each query is in `queries` (a null query: `null_query`), and each
    /// dimension value (by name, then value text) in `dims`: looked up without a copy.
    query_at: FxHashMap<String, usize>,
    null_query: Option<usize>,
    dim_at: FxHashMap<String, FxHashMap<String, usize>>,
}

/// A float field: `None` for null; a number as Rust parses it.
fn float(raw: Option<&RawValue>) -> Result<Option<f64>, String> {
    match raw.map(RawValue::get) {
        None | Some("null") => Ok(None),
        Some(text) => text
            .parse::<f64>()
            .map(Some)
            .map_err(|e| format!("{text}: {e}")),
    }
}

impl WindowAgg {
    /// `WindowAgg.add_search` of one record (`rank`: its first click's, if clicked;
    /// `value`: its conversion value, NaN for a non-finite one written as null).
    fn add(&mut self, r: &Rec, rank: Option<u64>, rr: Option<f64>, ttfc: Option<f64>, value: f64) {
        let clicked = i64::from(r.clicked);
        let converted = i64::from(r.conversions > 0);
        self.searches += 1;
        self.conversions += r.conversions;
        self.converted += converted;
        if value != 0.0 {
            self.values.push(value);
        }
        self.short_click += i64::from(r.short_click);
        for (name, raw) in &r.dimensions {
            let at = self.dim_slot(name, raw.get());
            let d = &mut self.dims[at].1;
            d.searches += 1;
            d.clicked += clicked;
            d.converted += converted;
            if value != 0.0 {
                d.values.push(value);
            }
            d.zero += i64::from(r.zero_results);
            d.abandoned += i64::from(r.abandoned);
            if let Some(rank) = rank {
                d.rank_sum += i128::from(rank);
                d.ranks += 1;
            }
            if rr.is_some() {
                d.rr_n += 1;
                if let (true, Some(rank)) = (r.clicked, rank) {
                    *d.rr_ranks.entry(rank).or_insert(0) += 1;
                }
            }
        }
        self.clicked += clicked;
        self.clicks += r.clicks;
        self.zero += i64::from(r.zero_results);
        self.abandoned += i64::from(r.abandoned);
        self.reformulated += i64::from(r.reformulated);
        self.long_click += i64::from(r.long_click);
        if let Some(rank) = rank {
            self.rank_sum += i128::from(rank);
            self.ranks += 1;
        }
        if rr.is_some() {
            self.rr_n += 1;
            if let (true, Some(rank)) = (r.clicked, rank) {
                *self.rr_ranks.entry(rank).or_insert(0) += 1;
            }
        }
        if let Some(t) = ttfc {
            self.ttfc.push(t);
        }
        let at = self.query_slot(r.query.as_deref());
        let q = &mut self.queries[at].1;
        q.searches += 1;
        q.clicked += clicked;
        q.zero += i64::from(r.zero_results);
        if let Some(rank) = rank {
            q.rank_sum += i128::from(rank);
            q.ranks += 1;
        }
    }
}

/// A window's sums under `(rollup length's index, window start)`.
pub type Window = ((usize, i64), WindowAgg);

impl WindowAgg {
    /// The index of `query` in `queries`, added where it is new.
    fn query_slot(&mut self, query: Option<&str>) -> usize {
        let known = match query {
            None => self.null_query,
            Some(q) => self.query_at.get(q).copied(),
        };
        if let Some(at) = known {
            return at;
        }
        let at = self.queries.len();
        self.queries
            .push((query.map(str::to_owned), QueryAgg::default()));
        match query {
            None => self.null_query = Some(at),
            Some(q) => {
                self.query_at.insert(q.to_owned(), at);
            }
        }
        at
    }

    /// The index of the dimension value (`name`, its JSON text) in `dims`, added where
    /// it is new.
    fn dim_slot(&mut self, name: &str, value: &str) -> usize {
        if let Some(&at) = self.dim_at.get(name).and_then(|values| values.get(value)) {
            return at;
        }
        let at = self.dims.len();
        self.dims
            .push(((name.to_owned(), value.to_owned()), DimAgg::default()));
        self.dim_at
            .entry(name.to_owned())
            .or_default()
            .insert(value.to_owned(), at);
        at
    }
}

/// `window_start`: the start of the tumbling window of `length_s` seconds holding `t`.
fn window_start(t: i64, length_s: i64) -> i64 {
    let size = length_s.saturating_mul(1_000_000);
    t - t.rem_euclid(size)
}

/// The partial sums of the search records on `lines` (one a line, at `times`), for
/// each rollup length (seconds): `((length's index, window start), sums)`, windows in
/// the order they first came (the Python core's dict order).
pub fn aggregate(lines: &[u8], times: &[i64], lengths: &[i64]) -> Result<Vec<Window>, String> {
    let mut out: Vec<Window> = Vec::new();
    let mut at: FxHashMap<(usize, i64), usize> = FxHashMap::default();
    let mut records = lines.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    for &t in times {
        let line = records.next().ok_or("fewer search lines than times")?;
        let r: Rec = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        let rank = if r.clicked { r.first_click_rank } else { None };
        let rr = float(r.reciprocal_rank)?;
        let ttfc = float(r.time_to_first_click)?;
        // (`conversion_value or 0.0`; null, a non-finite sum, stays non-finite: NaN.)
        let value = float(r.conversion_value)?.unwrap_or(f64::NAN);
        for (i, &length) in lengths.iter().enumerate() {
            let key = (i, window_start(t, length));
            let slot = *at.entry(key).or_insert_with(|| {
                out.push((key, WindowAgg::default()));
                out.len() - 1
            });
            out[slot].1.add(&r, rank, rr, ttfc, value);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"search_id":"s1","session_id":"x","user":"u","query":"dogs","time":"t","results":10,"zero_results":false,"clicks":2,"clicked":true,"ctr":1.0,"first_click_rank":3,"reciprocal_rank":0.3333333333333333,"time_to_first_click":2.5,"abandoned":false,"reformulated":false,"long_click":true,"short_click":false,"keystrokes":1,"conversions":1,"converted":true,"conversion_value":null,"dimensions":{"variant":"A","n":2.0}}"#;
    const ZERO: &str = r#"{"query":null,"zero_results":true,"clicks":0,"clicked":false,"first_click_rank":null,"reciprocal_rank":0.0,"time_to_first_click":null,"abandoned":false,"reformulated":true,"long_click":false,"short_click":false,"conversions":0,"conversion_value":0.0,"dimensions":{}}"#;

    #[test]
    fn sums_as_the_python_core() {
        let lines = format!("{LINE}\n{ZERO}\n");
        let got = aggregate(
            lines.as_bytes(),
            &[3_600_000_001, 7_200_000_000],
            &[3600, 86400],
        )
        .unwrap();
        let keys: Vec<(usize, i64)> = got.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![(0, 3_600_000_000), (1, 0), (0, 7_200_000_000)]);
        let day = &got[1].1;
        assert_eq!(
            (
                day.searches,
                day.clicked,
                day.clicks,
                day.zero,
                day.reformulated
            ),
            (2, 1, 2, 1, 1)
        );
        assert_eq!((day.rank_sum, day.ranks, day.rr_n), (3, 1, 2));
        assert_eq!(day.rr_ranks, BTreeMap::from([(3, 1)]));
        assert_eq!(day.ttfc, vec![2.5]);
        assert!(day.values.len() == 1 && day.values[0].is_nan());
        let queries: Vec<Option<&str>> = day.queries.iter().map(|(q, _)| q.as_deref()).collect();
        assert_eq!(queries, vec![Some("dogs"), None]);
        let dims: Vec<(&str, &str)> = day
            .dims
            .iter()
            .map(|((n, v), _)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(dims, vec![("n", "2.0"), ("variant", "\"A\"")]);
    }

    #[test]
    fn window_starts_floor_before_the_epoch() {
        assert_eq!(window_start(-1, 60), -60_000_000);
        assert_eq!(window_start(59_999_999, 60), 0);
    }

    #[test]
    fn a_cut_line_is_an_error() {
        assert!(aggregate(b"{\"query\":", &[0], &[60]).is_err());
        assert!(aggregate(b"", &[0], &[60]).is_err());
    }
}
