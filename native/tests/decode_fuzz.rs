//! No input bytes make the decoder panic: arbitrary bytes, and valid lines broken in
//! the ways real files break (flipped bits, cut lines, stray quotes, escapes, braces,
//! digits, NULs, deep nesting), read with layouts with and without dimensions, as JSON
//! Lines and as CSV and TSV rows.

use proptest::prelude::*;
use search_sessions_native::decode::{Layout, LineDecoder};

fn decoders() -> Vec<LineDecoder> {
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let layouts = [
        Layout {
            unit: "auto".into(),
            ..Layout::default()
        },
        Layout {
            fields: pairs(&[("user", "anon_id"), ("type", "event")]),
            types: pairs(&[("search", "query_submitted")]),
            unit: "ms".into(),
            dimensions: vec!["variant".into(), "platform".into()],
            currency: Some("USD".into()),
        },
        Layout {
            unit: "ns".into(),
            dimensions: vec!["platform".into()],
            ..Layout::default()
        },
    ];
    let mut out: Vec<LineDecoder> = layouts
        .into_iter()
        .map(|l| LineDecoder::new(l).unwrap())
        .collect();
    for (delimiter, header) in [(b',', CSV_HEADER), (b'\t', TSV_HEADER)] {
        let names: Vec<String> = header
            .split(char::from(delimiter))
            .map(|n| n.trim().to_string())
            .collect();
        let layout = Layout {
            unit: "auto".into(),
            dimensions: vec!["variant".into()],
            ..Layout::default()
        };
        let d = LineDecoder::delimited(layout, delimiter, header.as_bytes().to_vec(), &names);
        out.push(d.unwrap());
    }
    out
}

const CSV_HEADER: &str = "type,user,time,query,items,item,rank,search_id,variant";
const TSV_HEADER: &str = "variant\trank\titem\titems\tquery\ttime\tuser\ttype";

const VALID: [&str; 11] = [
    "search,u1,2024-01-01T00:00:05Z,\"dogs, \"\"small\"\"\",,,,s1,A",
    "results,7,1704067206,,a|b|\u{e9},,,,",
    "B\t2\trover\t\t\t2024-01-01 00:00:07.5+02:00\tu\tclick",
    r#"{"type":"search","user":"u1","time":"2024-01-01T00:00:05.123456+02:00","query":"dogs","search_id":"s-1","variant":"A","platform":"web"}"#,
    r#"{"type":"results","user":7,"time":1704067205,"items":["a","b\u00e9","\ud83d\ude00"]}"#,
    r#"{"type":"click","user":"u","time":1704067205.25,"item":"rover","rank":2,"platform":1.5}"#,
    r#"{"type":"conversion","user":"u","time":"1704067205123","value":24.5,"currency":"usd","kind":"k"}"#,
    r#"{"event":"query_submitted","anon_id":-3,"time":"2024-01-01 00:00:00","query":"q","variant":true}"#,
    r#"{"type":"purchase","user":"u","time":"2024-W01-1T12:00:00,5z","item":null,"value":-0}"#,
    r#"{"type":"app_open","user":"u","time":1e9,"x":[[{"y":null}]],"platform":null}"#,
    r#"{"type":"app_close","user":"u","time":"20240101T120000Z"}"#,
];

const INSERTS: [&[u8]; 17] = [
    b",",
    b"\t",
    b"|",
    b"\0",
    b"\"",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"{",
    b"}",
    b"[",
    b"]",
    b"9",
    b"-",
    b"e",
    b"\xff",
    b"\xef\xbb\xbf",
];

/// One change to a line: flip a bit, cut it, or insert something at a position.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, usize),
    Delete(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 0..INSERTS.len()).prop_map(|(i, k)| Mutation::Insert(i, k)),
        (any::<usize>(), 1usize..5).prop_map(|(i, n)| Mutation::Delete(i, n)),
    ]
}

fn apply(line: &mut Vec<u8>, m: &Mutation) {
    let at = |i: usize, line: &Vec<u8>| i % (line.len() + 1);
    match *m {
        Mutation::Flip(i, bit) if !line.is_empty() => {
            let i = i % line.len();
            line[i] ^= 1 << bit;
        }
        Mutation::Truncate(i) => line.truncate(at(i, line)),
        Mutation::Insert(i, k) => {
            let i = at(i, line);
            line.splice(i..i, INSERTS[k].iter().copied());
        }
        Mutation::Delete(i, n) => {
            let i = at(i, line);
            let end = (i + n).min(line.len());
            line.drain(i..end);
        }
        _ => {}
    }
}

fn decode_all(decoders: &[LineDecoder], line: &[u8]) {
    for d in decoders {
        let _ = d.decode(line, 0, 1);
        let _ = d.time(line);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_do_not_panic(line in proptest::collection::vec(any::<u8>(), 0..200)) {
        decode_all(&decoders(), &line);
    }

    #[test]
    fn broken_lines_do_not_panic(
        which in 0..VALID.len(),
        mutations in proptest::collection::vec(mutation(), 1..5),
    ) {
        let mut line = VALID[which].as_bytes().to_vec();
        for m in &mutations {
            apply(&mut line, m);
        }
        decode_all(&decoders(), &line);
    }
}

#[test]
fn valid_lines_decode() {
    let ds = decoders();
    for line in VALID {
        assert!(
            ds.iter().any(|d| d.decode(line.as_bytes(), 0, 1).is_some()),
            "{line}"
        );
    }
}

#[test]
fn deep_nesting_does_not_panic() {
    let ds = decoders();
    for open in ["[", "{\"a\":", "[{\"a\":"] {
        let deep = open.repeat(100_000);
        decode_all(&ds, deep.as_bytes());
        let line = format!(r#"{{"type":"app_open","user":"u","time":0,"x":{deep}"#);
        decode_all(&ds, line.as_bytes());
        let line = format!(r#"{{"type":"app_open","user":"u","time":0,"platform":{deep}"#);
        decode_all(&ds, line.as_bytes());
    }
}
