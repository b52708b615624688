//! JSON text as msgspec writes it: strings, floats, times (`format_time`).
//!
//! The records' bytes must equal `msgspec.json.Encoder().encode_lines(records)`, so
//! every scalar is spelled as msgspec spells it (msgspec 0.22's `json_encode_str`
//! and `ryu.h`), not as `serde_json` would.

/// The escape of each ASCII byte msgspec escapes (0 for a byte written as is):
/// `"` and `\` by a backslash, `\b \t \n \f \r` by their letters, every other
/// control character (below 0x20) as `\u00XX`. DEL (0x7f), U+2028, U+2029 and all
/// non-ASCII text are written as they are (UTF-8).
const ESCAPE: [u8; 128] = {
    let mut table = [0u8; 128];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A JSON string as msgspec writes it (see [`ESCAPE`]).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = if b < 0x80 { ESCAPE[b as usize] } else { 0 };
        if esc == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        if esc == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.push(b'\\');
            out.push(esc);
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A float as msgspec writes it: ryu's shortest round-trip digits, laid out as
/// msgspec's `format_double` (the layout of the `ryu` crate's `format_finite`,
/// which it mirrors): `1.0`, `0.5`, `0.00001`, `1e-6`, `1e16`,
/// `1.2345678901234568e17`, `-0.0`; `null` for a non-finite float.
pub fn write_f64(out: &mut Vec<u8>, x: f64) {
    if x.is_finite() {
        let mut buf = ryu::Buffer::new();
        out.extend_from_slice(buf.format_finite(x).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// An optional float (`null` for `None`).
pub fn write_opt_f64(out: &mut Vec<u8>, x: Option<f64>) {
    match x {
        Some(x) => write_f64(out, x),
        None => out.extend_from_slice(b"null"),
    }
}

/// An integer, as `str(int)` writes it.
pub fn write_int<I: itoa::Integer>(out: &mut Vec<u8>, i: I) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(i).as_bytes());
}

/// An optional integer (`null` for `None`).
pub fn write_opt_int<I: itoa::Integer>(out: &mut Vec<u8>, i: Option<I>) {
    match i {
        Some(i) => write_int(out, i),
        None => out.extend_from_slice(b"null"),
    }
}

pub fn write_bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// `"key":`, the start of an object's member.
pub fn write_key(out: &mut Vec<u8>, key: &str) {
    write_str(out, key);
    out.push(b':');
}

/// `format_time` of `core/time.py` as a JSON string: RFC 3339 UTC with `Z`
/// (`1970-01-01T00:00:01.500000Z`), the fraction only when it is not zero and then
/// always six digits (the Python core's millisecond branch writes `.250000`, the
/// same text). The year is at least four digits, as `datetime.isoformat` writes
/// years 1 to 9999; a time outside them (which the Python core never makes) is
/// still written, with its proleptic Gregorian year, rather than refused.
pub fn write_time(out: &mut Vec<u8>, us: i64) {
    let seconds = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut buf = [0u8; 40];
    let mut n = 0;
    let mut push = |b: u8| {
        if n < buf.len() {
            buf[n] = b;
            n += 1;
        }
    };
    push(b'"');
    if year < 0 {
        push(b'-');
    }
    let mut ybuf = itoa::Buffer::new();
    let ytext = ybuf.format(year.unsigned_abs());
    for _ in ytext.len()..4 {
        push(b'0');
    }
    ytext.bytes().for_each(&mut push);
    let two = |push: &mut dyn FnMut(u8), v: i64| {
        push(b'0' + (v / 10) as u8);
        push(b'0' + (v % 10) as u8);
    };
    push(b'-');
    two(&mut push, month);
    push(b'-');
    two(&mut push, day);
    push(b'T');
    two(&mut push, secs / 3600);
    push(b':');
    two(&mut push, secs / 60 % 60);
    push(b':');
    two(&mut push, secs % 60);
    if frac != 0 {
        push(b'.');
        let mut f = frac;
        let mut digits = [b'0'; 6];
        for d in digits.iter_mut().rev() {
            *d = b'0' + (f % 10) as u8;
            f /= 10;
        }
        digits.into_iter().for_each(&mut push);
    }
    push(b'Z');
    push(b'"');
    out.extend_from_slice(&buf[..n]);
}

/// `(year, month, day)` of the proleptic Gregorian calendar for days since
/// 1970-01-01 (Howard Hinnant's `civil_from_days`); plain arithmetic, defined for
/// every `i64` day an `i64` of microseconds can name.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `math.fsum`: the exactly rounded sum of `values`, CPython's algorithm (Shewchuk's
/// partials, then the half-even correction across partials), so the last bit is the
/// Python core's. Where CPython raises (an intermediate overflow, `-inf + inf`) the
/// sum is not finite, and is written `null`.
pub fn fsum(values: &[f64]) -> f64 {
    if let [value] = values {
        return value + 0.0; // the one value, but `0.0` for `-0.0` as fsum's
    }
    let mut partials: Vec<f64> = Vec::new();
    let mut special_sum = 0.0f64;
    for &value in values {
        let mut x = value;
        let mut i = 0;
        for j in 0..partials.len() {
            let mut y = partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                partials[i] = lo;
                i += 1;
            }
            x = hi;
        }
        partials.truncate(i);
        if x != 0.0 {
            if !x.is_finite() {
                if value.is_finite() {
                    return f64::INFINITY; // CPython: "intermediate overflow in fsum"
                }
                special_sum += value;
                partials.clear();
            } else {
                partials.push(x);
            }
        }
    }
    if special_sum != 0.0 {
        // inf, -inf, or NaN where CPython raises "-inf + inf in fsum".
        return special_sum;
    }
    fsum_partials(&mut partials)
}

/// The end of `math.fsum`: the partials (increasing in magnitude, non-overlapping)
/// summed from the top while exact, then CPython's half-even fix-up.
fn fsum_partials(p: &mut Vec<f64>) -> f64 {
    let Some(mut hi) = p.pop() else {
        return 0.0;
    };
    let mut lo = 0.0;
    while let Some(y) = p.pop() {
        let x = hi;
        hi = x + y;
        lo = y - (hi - x);
        if lo != 0.0 {
            break;
        }
    }
    if let Some(&last) = p.last() {
        if (lo < 0.0 && last < 0.0) || (lo > 0.0 && last > 0.0) {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(x: f64) -> String {
        let mut out = Vec::new();
        write_f64(&mut out, x);
        String::from_utf8(out).unwrap()
    }

    fn s(text: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    fn t(us: i64) -> String {
        let mut out = Vec::new();
        write_time(&mut out, us);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn floats_as_msgspec_writes_them() {
        // Each pair checked against msgspec 0.22's `msgspec.json.encode`.
        let cases = [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (1e16, "1e16"),
            (1e15, "1000000000000000.0"),
            (1e-7, "1e-7"),
            (1e-5, "0.00001"),
            (1e-6, "1e-6"),
            (1.1e-6, "1.1e-6"),
            (123456789012345680.0, "1.2345678901234568e17"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e308"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (12345.678, "12345.678"),
            (2.5e-300, "2.5e-300"),
            (1.23e20, "1.23e20"),
            (9007199254740992.0, "9007199254740992.0"),
            (f64::INFINITY, "null"),
            (f64::NAN, "null"),
        ];
        for (x, want) in cases {
            assert_eq!(f(x), want, "{x:?}");
        }
    }

    #[test]
    fn strings_as_msgspec_writes_them() {
        assert_eq!(s("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            s("\u{0}\u{1f}\u{8}\t\n\u{b}\u{c}\r"),
            r#""\u0000\u001f\b\t\n\u000b\f\r""#
        );
        assert_eq!(
            s("\u{7f}\u{2028}\u{2029}é😀/"),
            "\"\u{7f}\u{2028}\u{2029}é😀/\""
        );
        assert_eq!(s(""), "\"\"");
    }

    #[test]
    fn times_as_format_time_writes_them() {
        assert_eq!(t(1_500_000), "\"1970-01-01T00:00:01.500000Z\"");
        assert_eq!(t(0), "\"1970-01-01T00:00:00Z\"");
        assert_eq!(t(-1), "\"1969-12-31T23:59:59.999999Z\"");
        assert_eq!(t(1_250_000), "\"1970-01-01T00:00:01.250000Z\"");
        assert_eq!(t(1_704_067_200_000_001), "\"2024-01-01T00:00:00.000001Z\"");
        // MIN_US and MAX_US of core/time.py.
        assert_eq!(t(-62_135_510_400_000_000), "\"0001-01-02T00:00:00Z\"");
        assert_eq!(t(253_402_128_000_000_000), "\"9999-12-30T00:00:00Z\"");
        assert_eq!(t(951_782_400_000_000), "\"2000-02-29T00:00:00Z\"");
        // No panic at the ends of i64.
        assert!(t(i64::MIN).starts_with("\"-"));
        assert!(t(i64::MAX).ends_with("Z\""));
    }

    #[test]
    fn fsum_is_exactly_rounded() {
        assert_eq!(fsum(&[]), 0.0);
        assert!(fsum(&[-0.0]).is_sign_positive());
        assert_eq!(fsum(&[0.1; 10]), 1.0);
        assert_eq!(fsum(&[1e-16, 1.0, 1e16]), 10000000000000002.0);
        assert_eq!(fsum(&[1e308, 1e308, -1e308]), f64::INFINITY);
        assert_eq!(
            fsum(&[1e100, 1.0, -1e100, 1e-100, 1e50, -1.0, -1e50]),
            1e-100
        );
        assert_eq!(fsum(&[f64::INFINITY, 1.0]), f64::INFINITY);
        assert!(fsum(&[f64::INFINITY, f64::NEG_INFINITY]).is_nan());
    }
}
