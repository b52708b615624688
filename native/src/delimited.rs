//! CSV and TSV rows with the Python core's rules (`core/formats.py` `CsvDecoder`, then
//! msgspec's `convert(row, struct, strict=False)` and `EventDecoder.event`).
//!
//! The contract is [`crate::decode`]'s: `Some(event)` only where the Python core gives
//! exactly that event, `None` where the row is invalid or this decoder is not sure (the
//! Python core then decodes it, or says why not). A row is split at its delimiter; a
//! cell in double quotes may hold the delimiter and doubled quotes (`"a, ""b"""`).
//! Deferred besides invalid rows: a header line, a quote anywhere but around a whole
//! cell, a quoted row with a carriage return or NUL inside, a row of another width than
//! the header, a header that names a column twice, conversions, a `rank` that is not
//! plain digits, and an `items` cell in JSON (`[...]`) on a row that is not `results`.
//!
//! What a row means (the Python core's `CsvDecoder`): an empty cell is a missing field,
//! except `query` and `item`, which keep the empty string; every cell is text (so a
//! user, a search id and a dimension are strings, and a time is read as time text,
//! epoch digits included), but `rank`, read as an integer, and `items`, a JSON array
//! when the cell starts with `[`, else `|`-separated (an empty cell: no items).

use std::borrow::Cow;

use crate::decode::{
    rank, surrogates_paired, Names, FIELDS, ITEM, ITEMS, QUERY, RANK, SEARCH_ID, TIME, TYPE, USER,
};
use crate::event::{Dim, Event, Payload, Text, APP_CLOSE, APP_OPEN, CLICK, RESULTS, SEARCH};
use crate::time;

/// A CSV or TSV input's columns under its header row.
#[derive(Debug)]
pub(crate) struct Columns {
    delimiter: u8,
    /// The header line without its line end (a row equal to it holds no event).
    header: Vec<u8>,
    /// How many cells a row has.
    width: usize,
    /// The column of each field slot (`None`: the header has no such column).
    fields: [Option<usize>; FIELDS.len()],
    /// The column of each dimension.
    dims: Vec<Option<usize>>,
}

impl Columns {
    /// The columns of a header row's stripped `names`, for a layout's `names`; `None`
    /// where a name is given twice (the Python core keeps the last cell of a name).
    pub(crate) fn new(
        names: &Names,
        delimiter: u8,
        header: Vec<u8>,
        columns: &[String],
    ) -> Option<Self> {
        let mut seen = rustc_hash::FxHashSet::default();
        if !columns.iter().all(|c| seen.insert(c)) {
            return None;
        }
        let at = |key: &String| columns.iter().position(|c| c == key);
        let mut fields = [None; FIELDS.len()];
        for (slot, key) in names.keys.iter().take(FIELDS.len()).enumerate() {
            fields[slot] = at(key);
        }
        Some(Columns {
            delimiter,
            header,
            width: columns.len(),
            fields,
            dims: names.keys[FIELDS.len()..].iter().map(at).collect(),
        })
    }

    /// The row's event, or `None`: ask the Python core.
    pub(crate) fn decode(
        &self,
        names: &Names,
        n_dims: usize,
        line: &[u8],
        part: u32,
        seq: i64,
    ) -> Option<Event> {
        let line = without_line_end(line);
        if line == self.header.as_slice() {
            return None; // (no event: the Python core says so)
        }
        let text = std::str::from_utf8(line).ok()?;
        let cells = split_cells(text, self.delimiter)?;
        if cells.len() != self.width {
            return None;
        }
        // A cell of a field slot, as the Python core's row holds it: absent when empty,
        // but for the query and the item.
        let cell = |slot: usize| -> Option<&str> {
            let c: &str = &cells[self.fields[slot]?];
            (!c.is_empty() || slot == QUERY || slot == ITEM).then_some(c)
        };
        let tag = cell(TYPE)?;
        let kind = names.kind_of(tag)?;
        if cell(ITEMS).is_some_and(|c| c.starts_with('[')) && kind != RESULTS {
            return None; // (the Python core reads it as JSON, for any kind)
        }
        let user = Text::from(cell(USER)?);
        let t = time::from_str(cell(TIME)?, names.unit)?.ok()?;
        let (payload, rank) = match kind {
            APP_OPEN | APP_CLOSE => (Payload::None, None),
            SEARCH => (Payload::Text(Text::from(cell(QUERY)?)), None),
            RESULTS => (Payload::Items(items(&cells[self.fields[ITEMS]?])?), None),
            CLICK => (
                Payload::Text(Text::from(cell(ITEM)?)),
                plain_rank(cell(RANK))?,
            ),
            _ => return None, // (conversions: the Python core)
        };
        let search_id = match kind {
            APP_OPEN | APP_CLOSE => None,
            _ => cell(SEARCH_ID).map(Box::from),
        };
        let dims = (n_dims > 0).then(|| {
            self.dims
                .iter()
                .map(|col| match col.map(|i| &cells[i]) {
                    Some(c) if !c.is_empty() => Dim::Str(c.to_string()),
                    _ => Dim::Null,
                })
                .collect()
        });
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

    /// The row's event time alone (`CsvDecoder.times`): `Some(None)` for none, `None`
    /// where this decoder is not sure.
    pub(crate) fn time(&self, names: &Names, line: &[u8]) -> Option<Option<i64>> {
        let line = without_line_end(line);
        let Some(at) = self.fields[TIME] else {
            return Some(None);
        };
        if line == self.header.as_slice() {
            return Some(None);
        }
        let text = std::str::from_utf8(line).ok()?; // (the Python core reads it with U+FFFD)
        let cells = split_cells(text, self.delimiter)?;
        if cells.len() != self.width || cells[at].is_empty() {
            return Some(None);
        }
        Some(time::from_str(&cells[at], names.unit)?.ok())
    }
}

/// `bytes.rstrip(b"\r\n")`.
fn without_line_end(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| *b != b'\r' && *b != b'\n')
        .map_or(0, |i| i + 1);
    &line[..end]
}

/// `items`: a JSON array of strings when the cell starts with `[`, else the cell split
/// at `|` (an empty cell: none).
fn items(cell: &str) -> Option<Vec<Text>> {
    if cell.is_empty() {
        return Some(Vec::new());
    }
    if cell.starts_with('[') {
        if !surrogates_paired(cell) {
            return None;
        }
        return serde_json::from_str(cell).ok();
    }
    Some(cell.split('|').map(Text::from).collect())
}

/// A click's `rank` cell: plain digits of an integer from 1 to 2**63 - 1 (the Python
/// core's lax reading of others, `+3` or `3.0`, is left to it).
fn plain_rank(cell: Option<&str>) -> Option<Option<u64>> {
    match cell {
        None => Some(None),
        Some(c) if !c.starts_with('0') && c.bytes().all(|b| b.is_ascii_digit()) => rank(Some(c)),
        Some(_) => None,
    }
}

/// The row's cells: split at the delimiter where the row has no quote (as the Python
/// core splits it then); else cells whole in quotes read as `csv.reader` reads them,
/// `None` for anything else (a quote inside a cell, a quote not followed by the
/// delimiter, a quote left open, a carriage return or NUL).
pub fn split_cells(text: &str, delimiter: u8) -> Option<Vec<Cow<'_, str>>> {
    let bytes = text.as_bytes();
    if memchr::memchr(b'"', bytes).is_none() {
        return Some(
            text.split(char::from(delimiter))
                .map(Cow::Borrowed)
                .collect(),
        );
    }
    if memchr::memchr3(b'\r', b'\n', 0, bytes).is_some() {
        return None;
    }
    let mut cells = Vec::new();
    let mut i = 0;
    loop {
        if bytes.get(i) == Some(&b'"') {
            let (cell, next) = quoted(text, i + 1, delimiter)?;
            cells.push(Cow::Owned(cell));
            match next {
                Some(at) => i = at,
                None => return Some(cells),
            }
        } else {
            let end = memchr::memchr(delimiter, &bytes[i..]).map_or(bytes.len(), |k| i + k);
            let cell = &text[i..end];
            if cell.contains('"') {
                return None;
            }
            cells.push(Cow::Borrowed(cell));
            if end == bytes.len() {
                return Some(cells);
            }
            i = end + 1;
        }
    }
}

/// A quoted cell's text from just after its opening quote at `from`, and where the next
/// cell starts (`None`: the row ends with it); `None` for a quote left open or one not
/// followed by the delimiter.
fn quoted(text: &str, from: usize, delimiter: u8) -> Option<(String, Option<usize>)> {
    let bytes = text.as_bytes();
    let mut cell = String::new();
    let (mut start, mut j) = (from, from);
    loop {
        let k = j + memchr::memchr(b'"', &bytes[j..])?;
        if bytes.get(k + 1) == Some(&b'"') {
            cell.push_str(&text[start..=k]);
            j = k + 2;
            start = j;
            continue;
        }
        cell.push_str(&text[start..k]);
        return match bytes.get(k + 1) {
            None => Some((cell, None)),
            Some(&b) if b == delimiter => Some((cell, Some(k + 2))),
            Some(_) => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Layout, LineDecoder};

    fn csv(header: &str, dims: &[&str]) -> LineDecoder {
        let names: Vec<String> = header.split(',').map(|n| n.trim().to_string()).collect();
        let layout = Layout {
            unit: "auto".into(),
            dimensions: dims.iter().map(|d| d.to_string()).collect(),
            ..Layout::default()
        };
        LineDecoder::delimited(layout, b',', header.as_bytes().to_vec(), &names).unwrap()
    }

    const HEADER: &str = "type,user,time,query,items,item,rank,search_id,platform";

    #[test]
    fn reads_the_readme_rows() {
        let d = csv(HEADER, &["platform"]);
        let ev = d
            .decode(
                b"search,u1,2024-01-01T00:00:05Z,\"dogs, small\",,,,,web\r\n",
                0,
                2,
            )
            .unwrap();
        assert_eq!(
            (ev.t, ev.kind, ev.user.as_str()),
            (1_704_067_205_000_000, SEARCH, "u1")
        );
        assert_eq!(ev.payload, Payload::Text("dogs, small".into()));
        assert_eq!(ev.dims.as_deref(), Some(&[Dim::Str("web".into())][..]));
        let ev = d
            .decode(b"results,u1,1704067206,,fido|rover|,,,s1,\n", 0, 3)
            .unwrap();
        assert_eq!(
            ev.payload,
            Payload::Items(vec!["fido".into(), "rover".into(), "".into()])
        );
        assert_eq!(
            (ev.search_id.as_deref(), &ev.dims),
            (Some("s1"), &Some(vec![Dim::Null].into()))
        );
        let ev = d.decode(b"click,7,1704067207000,,,,2,,", 0, 4).unwrap();
        assert_eq!((ev.user.as_str(), ev.rank), ("7", Some(2)));
        assert_eq!(ev.payload, Payload::Text("".into()));
        let ev = d
            .decode(br#"results,u,1,,"[""a|b"", ""c""]",,,,"#, 0, 5)
            .unwrap();
        assert_eq!(ev.payload, Payload::Items(vec!["a|b".into(), "c".into()]));
    }

    #[test]
    fn defers_what_it_is_not_sure_of() {
        let d = csv(HEADER, &[]);
        for row in [
            HEADER,
            "click,u,1,,,x,02,,",
            "click,u,1,,,x,+2,,",
            "click,u,1,,,x,9223372036854775808,,",
            "search,u,1,q,[1],,,,",
            "search,u,1,\"q\"x,,,,,",
            "search,u,1,q\"x,,,,,",
            "search,u,1,\"q,,,,,",
            "search,u,1,q,,,,",
            "conversion,u,1,,,x,,,",
            "nope,u,1,q,,,,,",
            ",u,1,q,,,,,",
            "search,,1,q,,,,,",
            "search,u,,q,,,,,",
            "search,u,yesterday,q,,,,,",
            "results,u,1,,[\"a\",,,,",
        ] {
            assert!(d.decode(row.as_bytes(), 0, 1).is_none(), "{row}");
        }
        assert!(d.decode(b"search,u,1,q,,,,,\xff", 0, 1).is_none());
        let twice = csv("type,user,time,user", &[]);
        assert!(twice.decode(b"search,u,1,v", 0, 1).is_none());
    }

    #[test]
    fn splits_cells_as_the_csv_module() {
        let cells = |t: &str| {
            split_cells(t, b',').map(|c| c.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(
            cells("a,,b,"),
            Some(vec!["a".into(), "".into(), "b".into(), "".into()])
        );
        assert_eq!(
            cells(r#""a,""b""",c"#),
            Some(vec![r#"a,"b""#.into(), "c".into()])
        );
        assert_eq!(cells(r#""","""#), Some(vec!["".into(), "".into()]));
        assert_eq!(cells(r#""a" ,b"#), None);
        assert_eq!(cells("\"a\r\",b"), None);
    }

    #[test]
    fn reads_times_as_the_python_core() {
        let d = csv(HEADER, &[]);
        assert_eq!(d.time(HEADER.as_bytes()), Some(None));
        assert_eq!(d.time(b"x,u,1,,,,,,\n"), Some(Some(1_000_000)));
        assert_eq!(d.time(b"x,u,,,,,,,"), Some(None));
        assert_eq!(d.time(b"x,u,1"), Some(None));
        assert_eq!(d.time(b"x,u,soon,,,,,,"), Some(None));
        let no_time = csv("type,user", &[]);
        assert_eq!(no_time.time(b"search,u"), Some(None));
    }
}
