//! `decode_bench`: the native core's decode step, measured with three JSON crates.
//!
//! ```text
//! decode_bench bench [--parser NAME|all] [--repeat N] [--floors] FILE  time each parser
//! decode_bench check [--unit U] FILE                                    all parsers agree?
//! decode_bench reasons [--parser NAME] FILE                             invalid lines, why
//! decode_bench dump [--parser NAME] FILE                               events as JSON
//! decode_bench times [--parser mirror|jiff] [--unit U] FILE             one time per line
//! ```

mod decode;
mod derive;
mod events;
mod scalar;
mod time;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::time::Instant;

use decode::{Parser, decode_all};
use events::{Event, Kind, Payload};
use time::Unit;

struct Args {
    command: String,
    parser: String,
    repeat: usize,
    unit: Unit,
    floors: bool,
    file: String,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let command = it
        .next()
        .ok_or("a command: bench, check, reasons or times")?;
    let mut a = Args {
        command,
        parser: String::new(),
        repeat: 3,
        unit: Unit::Auto,
        floors: false,
        file: String::new(),
    };
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--parser" => a.parser = value()?,
            "--floors" => a.floors = true,
            "--repeat" => a.repeat = value()?.parse().map_err(|_| "--repeat: a number")?,
            "--unit" => a.unit = Unit::parse(&value()?).ok_or("--unit: auto, s, ms, us or ns")?,
            _ if a.file.is_empty() => a.file = arg,
            _ => return Err(format!("unexpected argument {arg}")),
        }
    }
    if a.file.is_empty() {
        return Err("a file".into());
    }
    Ok(a)
}

fn parsers(name: &str) -> Result<Vec<Parser>, String> {
    match name {
        "" | "all" => Ok(Parser::ALL.to_vec()),
        _ => Parser::parse(name)
            .map(|p| vec![p])
            .ok_or(format!("unknown parser {name}")),
    }
}

/// What a decode pass found: events per kind, invalid lines, a fold of the decoded
/// fields (so nothing is optimized away) and, when asked, a hash of every field.
#[derive(Default)]
struct Tally {
    kinds: [u64; 6],
    invalid: u64,
    fold: u64,
    hash: Option<DefaultHasher>,
}

impl Tally {
    fn add(&mut self, line: usize, result: Result<Event, String>) {
        match result {
            Ok(ev) => {
                self.kinds[ev.kind as usize] += 1;
                self.fold = self
                    .fold
                    .wrapping_add(ev.time_us as u64 ^ ev.user.len() as u64);
                if let Some(h) = &mut self.hash {
                    hash_event(h, line, &ev);
                }
            }
            Err(_) => {
                self.invalid += 1;
                if let Some(h) = &mut self.hash {
                    (line, "invalid").hash(h);
                }
            }
        }
    }
}

fn hash_event(h: &mut DefaultHasher, line: usize, ev: &Event) {
    (line, ev.kind, ev.time_us, &ev.user, &ev.search_id).hash(h);
    match &ev.payload {
        Payload::None => 0.hash(h),
        Payload::Query(q) => (1, q).hash(h),
        Payload::Items(items) => (2, items).hash(h),
        Payload::Click { item, rank } => (3, item, rank).hash(h),
        Payload::Conversion { item, value, kind } => {
            (4, item, value.map(f64::to_bits), kind).hash(h)
        }
    }
}

fn run(parser: Parser, buf: &[u8], unit: Unit, hash: bool) -> Tally {
    let mut tally = Tally {
        hash: hash.then(DefaultHasher::new),
        ..Tally::default()
    };
    decode_all(parser, buf, unit, |line, result| tally.add(line, result));
    tally
}

/// This thread's CPU time in seconds (`/proc/thread-self/schedstat`, nanoseconds on
/// the CPU): on a shared machine it moves far less than wall time.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns / 1e9)
}

fn bench(a: &Args) -> Result<(), String> {
    let buf = std::fs::read(&a.file).map_err(|e| format!("{}: {e}", a.file))?;
    let mb = buf.len() as f64 / 1e6;
    let parsers = parsers(&a.parser)?;
    // Rounds outside, parsers inside: load from other work falls on all of them alike.
    let mut best = vec![(f64::INFINITY, f64::INFINITY); parsers.len()];
    for _ in 0..a.repeat {
        for (parser, best) in parsers.iter().zip(&mut best) {
            let (start, cpu) = (Instant::now(), cpu_seconds());
            let tally = run(*parser, black_box(&buf), a.unit, false);
            let (wall, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu);
            black_box(tally.fold);
            *best = (best.0.min(wall), best.1.min(cpu));
        }
    }
    println!("{} ({:.1} MB), best of {}", a.file, mb, a.repeat);
    println!(
        "{:<17} {:>7} {:>7} {:>10} {:>7} {:>9} {:>7}  checksum",
        "parser", "wall s", "cpu s", "events/s", "MB/s", "events", "invalid"
    );
    for (parser, (wall, cpu)) in parsers.iter().zip(best) {
        let tally = run(*parser, &buf, a.unit, true);
        let events: u64 = tally.kinds.iter().sum();
        let lines = events + tally.invalid;
        println!(
            "{:<17} {:>7.3} {:>7.3} {:>10.0} {:>7.1} {:>9} {:>7}  {:016x}",
            parser.name(),
            wall,
            cpu,
            lines as f64 / wall,
            mb / wall,
            events,
            tally.invalid,
            tally.hash.map_or(0, |h| h.finish()),
        );
    }
    if a.floors { floors(&buf, a) } else { Ok(()) }
}

/// What the decode is made of: each crate's bare JSON parse (`IgnoredAny`), and the
/// time rules alone on every line's `time` value.
fn floors(buf: &[u8], a: &Args) -> Result<(), String> {
    let mb = buf.len() as f64 / 1e6;
    for parser in [Parser::SerdeJson, Parser::SimdJson, Parser::SonicRs] {
        let mut best = (f64::INFINITY, f64::INFINITY);
        let mut lines = 0;
        for _ in 0..a.repeat {
            let (start, cpu) = (Instant::now(), cpu_seconds());
            lines = decode::skip_all(parser, black_box(buf));
            let (wall, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu);
            best = (best.0.min(wall), best.1.min(cpu));
        }
        let name = format!("{} JSON only", parser.name());
        let (wall, cpu) = best;
        println!(
            "{name:<17} {wall:>7.3} {cpu:>7.3} {:>10.0} {:>7.1} {lines:>9}",
            lines as f64 / wall,
            mb / wall
        );
    }
    let raw = decode::raw_times(buf);
    let values: Vec<scalar::Scalar> = raw
        .iter()
        .filter_map(|r| {
            scalar::ScalarField::scalar(
                serde_json::from_str::<&serde_json::value::RawValue>(r).ok()?,
            )
            .ok()
        })
        .collect();
    let mut best = (f64::INFINITY, f64::INFINITY);
    for _ in 0..a.repeat {
        let (start, cpu) = (Instant::now(), cpu_seconds());
        let sum = values.iter().fold(0i64, |acc, v| {
            acc.wrapping_add(events::time_of(v, a.unit).and_then(Result::ok).unwrap_or(0))
        });
        black_box(sum);
        let (wall, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu);
        best = (best.0.min(wall), best.1.min(cpu));
    }
    println!(
        "{:<17} {:>7.3} {:>7.3} {:>10.0} {:>7} {:>9}",
        "time rules only",
        best.0,
        best.1,
        values.len() as f64 / best.0,
        "",
        values.len()
    );
    Ok(())
}

fn check(a: &Args) -> Result<bool, String> {
    let buf = std::fs::read(&a.file).map_err(|e| format!("{}: {e}", a.file))?;
    let mut reference = None;
    let mut same = true;
    for parser in Parser::ALL {
        let tally = run(parser, &buf, a.unit, true);
        let kinds: Vec<String> = Kind::ALL
            .iter()
            .map(|k| format!("{}={}", k.name(), tally.kinds[*k as usize]))
            .collect();
        let sum = tally.hash.map_or(0, |h| h.finish());
        let exact = Parser::EXACT.contains(&parser);
        let agrees = *reference.get_or_insert(sum) == sum;
        same &= agrees || !exact;
        println!(
            "{:<17} {:016x} {:<9} invalid={} {}",
            parser.name(),
            sum,
            if agrees { "same" } else { "DIFFERENT" },
            tally.invalid,
            kinds.join(" ")
        );
    }
    let verdict = if same { "agree" } else { "DISAGREE" };
    println!("serde_json, simd_json and sonic_rs {verdict}");
    Ok(same)
}

/// Every line as JSON: `[line, kind, user, time_us, payload, rank, search_id]` for an
/// event (the Python core's tuple), `[line, null, reason]` for an invalid one.
fn dump(a: &Args) -> Result<(), String> {
    let buf = std::fs::read(&a.file).map_err(|e| format!("{}: {e}", a.file))?;
    let parser = parsers(if a.parser.is_empty() {
        "serde_json"
    } else {
        &a.parser
    })?[0];
    let mut out = BufWriter::new(std::io::stdout().lock());
    decode_all(parser, &buf, a.unit, |line, result| {
        let row = match result {
            Ok(ev) => {
                let (payload, rank) = match ev.payload {
                    Payload::None => (serde_json::Value::Null, None),
                    Payload::Query(q) => (q.into(), None),
                    Payload::Items(items) => (items.into(), None),
                    Payload::Click { item, rank } => (item.into(), rank),
                    Payload::Conversion { item, value, kind } => {
                        (serde_json::json!([item, value, kind]), None)
                    }
                };
                let kind = ev.kind as usize;
                serde_json::json!([line, kind, ev.user, ev.time_us, payload, rank, ev.search_id])
            }
            Err(reason) => serde_json::json!([line, null, reason]),
        };
        let _ = writeln!(out, "{row}");
    });
    Ok(())
}

fn reasons(a: &Args) -> Result<(), String> {
    let buf = std::fs::read(&a.file).map_err(|e| format!("{}: {e}", a.file))?;
    let parser = parsers(if a.parser.is_empty() {
        "serde_json"
    } else {
        &a.parser
    })?[0];
    let mut out = BufWriter::new(std::io::stdout().lock());
    decode_all(parser, &buf, a.unit, |line, result| {
        let text = match result {
            Ok(ev) => format!("ok {} {} {}", ev.kind.name(), ev.user, ev.time_us),
            Err(reason) => reason,
        };
        let _ = writeln!(out, "{line}\t{text}");
    });
    Ok(())
}

/// One JSON value per line (a `time` field's value): its microseconds, or `invalid`.
fn times(a: &Args) -> Result<(), String> {
    let text = std::fs::read_to_string(&a.file).map_err(|e| format!("{}: {e}", a.file))?;
    let jiff = match a.parser.as_str() {
        "" | "mirror" => false,
        "jiff" => true,
        other => return Err(format!("--parser mirror or jiff, not {other}")),
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in text.lines() {
        let value = serde_json::from_str::<&serde_json::value::RawValue>(line)
            .map_err(|_| "not JSON")
            .and_then(scalar::ScalarField::scalar);
        let us = match value {
            Ok(scalar::Scalar::Str(s)) if jiff => Some(time::from_str_jiff(&s, a.unit)),
            Ok(v) => events::time_of(&v, a.unit),
            Err(_) => None,
        };
        let _ = match us {
            Some(Ok(us)) => writeln!(out, "{us}"),
            _ => writeln!(out, "invalid"),
        };
    }
    Ok(())
}

fn main() -> ExitCode {
    let result = args().and_then(|a| match a.command.as_str() {
        "bench" => bench(&a).map(|_| true),
        "check" => check(&a),
        "reasons" => reasons(&a).map(|_| true),
        "times" => times(&a).map(|_| true),
        "dump" => dump(&a).map(|_| true),
        other => Err(format!("unknown command {other}")),
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("decode_bench: {e}");
            ExitCode::from(2)
        }
    }
}
