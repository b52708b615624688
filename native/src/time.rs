//! Event time: UTC microseconds since the epoch, read exactly as the Python core reads
//! it: `search_sessions/core/time.py` (`parse_time`, `epoch_unit`) on CPython 3.11,
//! whose `datetime.fromisoformat` (Modules/_datetimemodule.c) is the grammar for text.
//!
//! jiff does the calendar (valid dates, ISO week dates, days since the epoch); the
//! grammar is CPython's, byte for byte, because no library parser accepts the same
//! strings (`bench/prototypes/native/README.md`: jiff's own parser disagrees with
//! Python on many spellings). Ported from that prototype, which was differential-tested
//! against Python on 100k spellings.

use jiff::civil::{Date, ISOWeekDate, Weekday};

/// `datetime(1, 1, 2, tzinfo=UTC) - EPOCH` in microseconds (`time.py` `MIN_US`).
pub const MIN_US: i64 = -62_135_510_400_000_000;
/// `datetime(9999, 12, 30, tzinfo=UTC) - EPOCH` in microseconds (`time.py` `MAX_US`).
pub const MAX_US: i64 = 253_402_128_000_000_000;

/// The unit of an epoch number (`--time-unit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Auto,
    S,
    Ms,
    Us,
    Ns,
}

impl Unit {
    pub fn parse(name: &str) -> Option<Unit> {
        Some(match name {
            "auto" => Unit::Auto,
            "s" => Unit::S,
            "ms" => Unit::Ms,
            "us" => Unit::Us,
            "ns" => Unit::Ns,
            _ => return None,
        })
    }
}

/// Why a time is refused (`time.py` `BadTime`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadTime {
    /// Not RFC 3339 / ISO 8601 text.
    NotIso,
    /// Outside `MIN_US..=MAX_US`.
    OutOfRange,
    /// NaN or infinite (only reachable through text such as `"1e999"`).
    NotFinite,
}

/// The unit `auto` reads a number in, by its size (`time.py` `epoch_unit`).
fn auto_unit_f(size: f64) -> Unit {
    if size < 1e11 {
        Unit::S
    } else if size < 1e14 {
        Unit::Ms
    } else if size < 1e17 {
        Unit::Us
    } else {
        Unit::Ns
    }
}

fn auto_unit_i(size: u128) -> Unit {
    if size < 100_000_000_000 {
        Unit::S
    } else if size < 100_000_000_000_000 {
        Unit::Ms
    } else if size < 100_000_000_000_000_000 {
        Unit::Us
    } else {
        Unit::Ns
    }
}

fn in_range(us: i128) -> Result<i64, BadTime> {
    if (MIN_US as i128..=MAX_US as i128).contains(&us) {
        Ok(us as i64)
    } else {
        Err(BadTime::OutOfRange)
    }
}

/// An integer epoch number: exact, nanoseconds rounded down.
pub fn from_int(value: i128, unit: Unit) -> Result<i64, BadTime> {
    let unit = match unit {
        Unit::Auto => auto_unit_i(value.unsigned_abs()),
        u => u,
    };
    let us = match unit {
        Unit::S => value.checked_mul(1_000_000),
        Unit::Ms => value.checked_mul(1_000),
        Unit::Us => Some(value),
        Unit::Ns | Unit::Auto => Some(value.div_euclid(1_000)),
    };
    us.map_or(Err(BadTime::OutOfRange), in_range)
}

/// A float epoch number: `round(value * scale)`, ties to even as Python's `round`.
pub fn from_float(value: f64, unit: Unit) -> Result<i64, BadTime> {
    if !value.is_finite() {
        return Err(BadTime::NotFinite);
    }
    let unit = match unit {
        Unit::Auto => auto_unit_f(value.abs()),
        u => u,
    };
    let scaled = match unit {
        Unit::S => value * 1_000_000.0,
        Unit::Ms => value * 1_000.0,
        Unit::Us => value,
        Unit::Ns | Unit::Auto => value * 0.001,
    };
    let us = scaled.round_ties_even();
    // Python raises OverflowError here (round of an infinity): a bug we do not copy.
    if !us.is_finite() || us.abs() > 1e19 {
        return Err(BadTime::OutOfRange);
    }
    in_range(us as i128)
}

/// A time given as text: an epoch number spelled as text, else ISO 8601 as CPython
/// 3.11's `fromisoformat` reads it, retried upper-cased (`t`, `z`, `w`).
///
/// Only printable ASCII is read here (`None` otherwise: the caller defers to the
/// Python core): Python's Unicode `\d`, `\s` and `str.upper` would need Unicode
/// tables of Python's own version, and C's NUL quirks are not worth copying for the
/// rare line that has them.
pub fn from_str(value: &str, unit: Unit) -> Option<Result<i64, BadTime>> {
    if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    if let Some(number) = number::parse(value) {
        return Some(match number {
            number::Number::Int(v) => from_int(v, unit),
            number::Number::Huge => Err(BadTime::OutOfRange),
            number::Number::Float(v) => from_float(v, unit),
        });
    }
    let us = match iso::parse(value) {
        Some(us) => us,
        None if !value.bytes().any(|b| b.is_ascii_lowercase()) => {
            return Some(Err(BadTime::NotIso));
        }
        None => match iso::parse(&value.to_ascii_uppercase()) {
            Some(us) => us,
            None => return Some(Err(BadTime::NotIso)),
        },
    };
    Some(in_range(i128::from(us)))
}

/// `time.py`'s `_NUMBER` (`^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$`) on
/// printable ASCII text, and what `float()` and `int()` make of a match.
mod number {
    pub enum Number {
        Int(i128),
        /// An integer too large for i128: out of range in every unit.
        Huge,
        Float(f64),
    }

    /// The number `value` spells, or `None` when it does not match `_NUMBER`.
    pub fn parse(value: &str) -> Option<Number> {
        let text = value.trim_matches(' ');
        let b = text.as_bytes();
        let digits = |mut i: usize| {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            (i, i - start)
        };
        let sign = usize::from(matches!(b.first(), Some(b'+' | b'-')));
        let (mut i, int_digits) = digits(sign);
        let (mut frac_digits, dot) = (0, b.get(i) == Some(&b'.'));
        if dot {
            (i, frac_digits) = digits(i + 1);
        }
        if int_digits + frac_digits == 0 {
            return None;
        }
        let exp = matches!(b.get(i), Some(b'e' | b'E'));
        if exp {
            i += 1 + usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
            let exp_digits;
            (i, exp_digits) = digits(i);
            if exp_digits == 0 {
                return None;
            }
        }
        if i != b.len() {
            return None;
        }
        let float: f64 = text.parse().ok()?;
        if dot || exp || !float.is_finite() {
            return Some(Number::Float(float));
        }
        Some(text.parse::<i128>().map_or(Number::Huge, Number::Int))
    }
}

/// CPython 3.11's `datetime.fromisoformat` on the UTF-8 bytes of a str, quirks
/// included (any character as separator, `,` fractions, digits past the sixth
/// dropped, offsets with seconds and fractions, a NUL ending the string early).
mod iso {
    use super::*;

    /// The byte at `i`, 0 past the end (C reads the string's NUL terminator).
    fn at(b: &[u8], i: usize) -> u8 {
        b.get(i).copied().unwrap_or(0)
    }

    fn digits(b: &[u8], p: usize, n: usize) -> Option<i32> {
        (p..p + n).try_fold(0, |v, i| {
            let d = at(b, i).wrapping_sub(b'0');
            (d < 10).then_some(v * 10 + d as i32)
        })
    }

    /// UTC microseconds of the string (printable ASCII: see `from_str`), `None` where
    /// Python raises ValueError.
    pub fn parse(s: &str) -> Option<i64> {
        if s.len() < 7 {
            return None; // (ASCII: as many characters as bytes)
        }
        let b = s.as_bytes();
        let sep = separator(b)?;
        let date = date(b, sep)?;
        let (mut clock, mut offset_us) = ((0, 0, 0, 0), 0);
        if b.len() > sep {
            let skip = match b[sep] {
                c if c & 0x80 == 0 => 1,
                c if c & 0xf0 == 0xe0 => 3,
                c if c & 0xf0 == 0xf0 => 4,
                _ => 2,
            };
            (clock, offset_us) = time(b, sep + skip)?;
        }
        let (h, m, sec, us) = clock;
        // The clock's ranges, as `datetime` checks them (the date is one jiff made).
        if !((0..24).contains(&h) && (0..60).contains(&m) && (0..60).contains(&sec)) {
            return None;
        }
        let seconds = epoch_day(date) * 86_400 + i64::from(h * 3600 + m * 60 + sec);
        Some(seconds * 1_000_000 + us as i64 - offset_us)
    }

    /// Days from 1970-01-01 to a (valid, proleptic Gregorian) date: Howard Hinnant's
    /// `days_from_civil`, a few integer operations where jiff's general conversion to a
    /// timestamp was a third of the cost of reading a time.
    pub(super) fn epoch_day(date: Date) -> i64 {
        let (m, d) = (i64::from(date.month()), i64::from(date.day()));
        let y = i64::from(date.year()) - i64::from(m <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// `_find_isoformat_datetime_separator`: where the date ends.
    fn separator(b: &[u8]) -> Option<usize> {
        let len = b.len();
        if len == 7 {
            return Some(7);
        }
        if at(b, 4) == b'-' {
            if at(b, 5) != b'W' {
                return Some(10);
            }
            if len > 8 && at(b, 8) == b'-' {
                if len == 9 {
                    return None;
                }
                return Some(if len > 10 && at(b, 10).is_ascii_digit() {
                    8
                } else {
                    10
                });
            }
            return Some(8);
        }
        if at(b, 4) != b'W' {
            return Some(8);
        }
        let idx = (7..len).find(|&i| !b[i].is_ascii_digit()).unwrap_or(len);
        Some(if idx < 9 {
            idx
        } else if idx % 2 == 0 {
            7
        } else {
            8
        })
    }

    /// `parse_isoformat_date`: YYYY-MM-DD, YYYYMMDD, YYYY-Www[-D], YYYYWww[D].
    fn date(b: &[u8], len: usize) -> Option<Date> {
        let year = digits(b, 0, 4)?;
        let dash = at(b, 4) == b'-';
        let mut p = 4 + dash as usize;
        if at(b, p) == b'W' {
            let week = digits(b, p + 1, 2)?;
            p += 3;
            let mut day = 1;
            if p < len {
                if dash {
                    if at(b, p) != b'-' {
                        return None;
                    }
                    p += 1;
                }
                day = digits(b, p, 1)?;
            }
            let weekday = Weekday::from_monday_one_offset(day as i8).ok()?;
            let date = ISOWeekDate::new(year as i16, week as i8, weekday)
                .ok()?
                .date();
            return (date.year() >= 1 && year >= 1).then_some(date);
        }
        let month = digits(b, p, 2)?;
        p += 2;
        if dash {
            if at(b, p) != b'-' {
                return None;
            }
            p += 1;
        }
        let day = digits(b, p, 2)?;
        if year < 1 {
            return None;
        }
        Date::new(year as i16, month as i8, day as i8).ok()
    }

    type Clock = (i32, i32, i32, i32);

    /// `parse_isoformat_time`: the clock and the offset in microseconds (0 when naive).
    fn time(b: &[u8], start: usize) -> Option<(Clock, i64)> {
        let end = b.len();
        let mut tz = start;
        loop {
            if matches!(at(b, tz), b'Z' | b'+' | b'-') {
                break;
            }
            tz += 1;
            if tz >= end {
                break;
            }
        }
        let (clock, rest) = hh_mm_ss_ff(b, start, tz)?;
        if tz == end {
            return (!rest).then_some((clock, 0));
        }
        if at(b, tz) == b'Z' {
            return (at(b, tz + 1) == 0).then_some((clock, 0));
        }
        let sign = if at(b, tz) == b'-' { -1 } else { 1 };
        let ((oh, om, os, ous), rest) = hh_mm_ss_ff(b, tz + 1, end)?;
        if rest {
            return None;
        }
        let seconds = oh * 3600 + om * 60 + os;
        if seconds == 0 {
            return Some((clock, 0)); // Python makes this UTC, dropping the fraction
        }
        let offset = sign * (seconds as i64 * 1_000_000 + ous as i64);
        (offset.abs() < 86_400_000_000).then_some((clock, offset))
    }

    /// `parse_hh_mm_ss_ff` between `p` and `end`: the fields and whether anything but
    /// the string's end follows them.
    fn hh_mm_ss_ff(b: &[u8], mut p: usize, end: usize) -> Option<(Clock, bool)> {
        let mut vals = [0; 3];
        let mut colons = true;
        for (i, val) in vals.iter_mut().enumerate() {
            *val = digits(b, p, 2)?;
            p += 2;
            let c = at(b, p);
            p += 1;
            if i == 0 {
                colons = c == b':';
            }
            if p >= end {
                return Some(((vals[0], vals[1], vals[2], 0), c != 0));
            } else if colons && c == b':' {
                continue;
            } else if c == b'.' || c == b',' {
                break;
            } else if !colons {
                p -= 1;
            } else {
                return None;
            }
        }
        let to_parse = (end - p).min(6);
        let mut us = digits(b, p, to_parse)?;
        us *= [100_000, 10_000, 1_000, 100, 10, 1][to_parse - 1];
        p += to_parse;
        while at(b, p).is_ascii_digit() {
            p += 1;
        }
        Some(((vals[0], vals[1], vals[2], us), at(b, p) != 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{DateTime, Time};
    use jiff::tz::Offset;

    fn t(s: &str) -> Result<i64, BadTime> {
        from_str(s, Unit::Auto).expect("printable ASCII")
    }

    #[test]
    fn bounds_match_python() {
        let min = Offset::UTC.to_timestamp(jiff::civil::date(1, 1, 2).at(0, 0, 0, 0));
        let max = Offset::UTC.to_timestamp(jiff::civil::date(9999, 12, 30).at(0, 0, 0, 0));
        assert_eq!(min.unwrap().as_microsecond(), MIN_US);
        assert_eq!(max.unwrap().as_microsecond(), MAX_US);
    }

    proptest::proptest! {
        #[test]
        fn epoch_days_are_jiffs(day in 0i64..3_652_059) {
            let date = jiff::civil::date(1, 1, 1)
                .checked_add(jiff::Span::new().days(day))
                .expect("within 1-9999");
            let want = Offset::UTC
                .to_timestamp(DateTime::from_parts(date, Time::midnight()))
                .unwrap()
                .as_second()
                / 86_400;
            proptest::prop_assert_eq!(iso::epoch_day(date), want);
        }
    }

    #[test]
    fn docstring_examples() {
        assert_eq!(t("2024-01-01T02:00:00.25+02:00"), Ok(1_704_067_200_250_000));
        assert_eq!(t("1970-01-01T00:00:01.5Z"), Ok(1_500_000));
        assert_eq!(from_float(1.5, Unit::Auto), Ok(1_500_000));
        assert_eq!(from_str("1500", Unit::Ms), Some(Ok(1_500_000)));
        assert_eq!(t("1970-01-01 02:00:01+02:00"), Ok(1_000_000));
    }

    #[test]
    fn quirks() {
        assert_eq!(t("1970-01-01T00:00:00.1234567Z"), Ok(123_456)); // truncated
        assert_eq!(t("1970-01-01T00:00:00:123"), Ok(123_000));
        assert_eq!(t("1970-01-01t00:00z"), Ok(0));
        assert_eq!(t("1970-01-01T00:00:00+00:00:00.5"), Ok(0));
        assert_eq!(t("1970-01-01T23:59:60"), Err(BadTime::NotIso));
        assert_eq!(t("1700000000"), Ok(1_700_000_000_000_000));
        assert_eq!(t(" 17e8 "), Ok(1_700_000_000_000_000));
        assert_eq!(t("+0017"), Ok(17_000_000));
        assert_eq!(t("1e400"), Err(BadTime::NotFinite));
        assert_eq!(
            t("2024-01-01T00:00:00.1234567891234+05:30"),
            Ok(1_704_047_400_123_456)
        );
        assert!(t("9999-12-31T00:00:00Z").is_err()); // past MAX_US (and jiff's range)
        assert_eq!(t("9999-12-30T00:00:00.000001Z"), Err(BadTime::OutOfRange));
        // Not printable ASCII: the Python core decides.
        assert_eq!(from_str("\u{661}", Unit::Auto), None);
        assert_eq!(from_str("\u{1c}5", Unit::Auto), None);
        assert_eq!(from_str("1970-01-01T00:00\u{0}Z", Unit::Auto), None);
        assert_eq!(from_int(-1, Unit::Ns), Ok(-1));
    }
}
