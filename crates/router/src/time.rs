//! XEP-0082 timestamps, without a date library: only UTC `CCYY-MM-DDThh:mm:ss[.sss]Z` is
//! ever produced; [`parse_datetime`] reads any XEP-0082 DateTime (e.g. MAM query bounds).

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Formats Unix microseconds as an XEP-0082 DateTime in UTC with millisecond precision.
pub fn format_micros(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let millis = micros.rem_euclid(1_000_000) / 1000;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Parses an XEP-0082 DateTime (`CCYY-MM-DDThh:mm:ss[.sss]TZD`, TZD being `Z` or `±hh:mm`)
/// into Unix microseconds. Strict: every field must have its exact width and be in range
/// (February 29 only in leap years); fractions beyond microseconds are truncated. `None` for
/// anything else, so callers can answer `bad-request`.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter().try_fold(0i64, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if seps.iter().any(|&(i, c)| b.get(i) != Some(&c)) {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59
    {
        return None;
    }
    let mut i = 19;
    let mut micros = 0;
    if b.get(i) == Some(&b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        micros = (0..6).fold(0, |acc, k| {
            acc * 10
                + if k < digits {
                    i64::from(b[i + 1 + k] - b'0')
                } else {
                    0
                }
        });
        i += 1 + digits;
    }
    let offset_secs = match &b[i..] {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    Some(secs * 1_000_000 + micros)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A proleptic Gregorian date to days since 1970-01-01 (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(format_micros(0), "1970-01-01T00:00:00.000Z");
        // XEP-0082 example: 1969-07-21T02:56:15Z. Expected values checked with `date -u -d @SECS`.
        assert_eq!(
            format_micros(-14_159_025_000_000),
            "1969-07-21T02:56:15.000Z"
        );
        assert_eq!(
            format_micros(951_782_400_123_000),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            format_micros(1_796_000_000_000_000),
            "2026-11-30T00:53:20.000Z"
        );
    }

    #[test]
    fn parses_xep0082_datetimes() {
        // XEP-0082 §3.2 examples: the same instant in UTC and with an offset.
        assert_eq!(
            parse_datetime("1969-07-21T02:56:15Z"),
            Some(-14_159_025_000_000)
        );
        assert_eq!(
            parse_datetime("1969-07-20T21:56:15-05:00"),
            Some(-14_159_025_000_000)
        );
        assert_eq!(
            parse_datetime("2000-02-29T00:00:00.123Z"),
            Some(951_782_400_123_000)
        );
        assert_eq!(parse_datetime("1970-01-01T00:00:00.0000019Z"), Some(1));
        assert_eq!(parse_datetime("1970-01-01T02:00:00+02:00"), Some(0));
        for t in [
            0,
            951_782_400_123_000,
            1_796_000_000_000_000,
            -14_159_025_000_000,
        ] {
            assert_eq!(parse_datetime(&format_micros(t)), Some(t), "{t}");
        }
        for bad in [
            "",
            "2010-07-10",
            "2010-07-10T23:08:25",
            "2010-07-10t23:08:25Z",
            "2010-7-10T23:08:25Z",
            "2010-07-10T23:08:25.Z",
            "2010-07-10T24:00:00Z",
            "2010-13-01T00:00:00Z",
            "2010-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2010-04-31T00:00:00Z",
            "2010-07-10T23:08:60Z",
            "2010-07-10T23:08:25+0200",
            "2010-07-10T23:08:25+02:60",
            "2010-07-10T23:08:25Zjunk",
            "+010-07-10T23:08:25Z",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad:?}");
        }
        assert!(parse_datetime("2000-02-29T12:00:00Z").is_some());
    }
}
