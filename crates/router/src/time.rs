//! XEP-0082 timestamps, without a date library: only UTC `CCYY-MM-DDThh:mm:ss[.sss]Z` is
//! ever produced.

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
}
