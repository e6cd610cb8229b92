//! RFC 3339 times, the form WeChat Pay's JSON uses (`2018-06-08T10:34:56+08:00`), by hand:
//! two conversions do not justify a date crate.
//!
//! What wxlogin sends is written at +08:00, the offset of WeChat Pay's own examples (China
//! Standard Time, no daylight saving); what it reads may carry any offset (or `Z`) and
//! optional fractional seconds, which are dropped.

use crate::civil::{civil_from_days, days_from_civil, days_in_month};

/// China Standard Time, in seconds east of UTC.
const CST_OFFSET: i64 = 8 * 3600;

/// `unix` as `YYYY-MM-DDTHH:MM:SS+08:00`; `None` outside the years 0000 to 9999, which
/// RFC 3339 cannot write.
pub fn format_cst(unix: i64) -> Option<String> {
    let local = unix.checked_add(CST_OFFSET)?;
    let (days, secs) = (local.div_euclid(86_400), local.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    Some(format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+08:00", secs / 3600, secs / 60 % 60, secs % 60))
}

/// Unix seconds of an RFC 3339 date-time, or `None` for anything not in that form or not
/// a real date (February 30th, hour 24). Leap seconds (`:60`) are refused: WeChat Pay's
/// times never carry one.
pub fn parse(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        rest = &fraction[n..];
    }
    let offset = parse_offset(rest)?;
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// `Z` or `±HH:MM`, in seconds east of UTC.
fn parse_offset(b: &[u8]) -> Option<i64> {
    match b {
        [b'Z' | b'z'] => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (hours, minutes) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            Some(if *sign == b'-' { -offset } else { offset })
        }
        _ => None,
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |n, c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_at_plus_eight_like_wechat_pays_examples() {
        // research/wechat-pay.md §3: 2018-06-08T10:34:56+08:00 is 1528425296.
        assert_eq!(format_cst(1_528_425_296).as_deref(), Some("2018-06-08T10:34:56+08:00"));
        assert_eq!(format_cst(0).as_deref(), Some("1970-01-01T08:00:00+08:00"));
        assert_eq!(format_cst(1_709_193_600).as_deref(), Some("2024-02-29T16:00:00+08:00"));
        // 16:00 UTC on the 29th is already March in Beijing.
        assert_eq!(format_cst(1_709_222_400).as_deref(), Some("2024-03-01T00:00:00+08:00"));
        assert_eq!(format_cst(-1).as_deref(), Some("1970-01-01T07:59:59+08:00"));
        assert_eq!(format_cst(i64::MAX), None);
        assert_eq!(format_cst(-62_167_219_200 - 8 * 3600 - 1), None, "before year 0");
    }

    #[test]
    fn parses_any_offset_and_fractions() {
        assert_eq!(parse("2018-06-08T10:34:56+08:00"), Some(1_528_425_296));
        assert_eq!(parse("2018-06-08T02:34:56Z"), Some(1_528_425_296));
        assert_eq!(parse("2018-06-08T02:34:56z"), Some(1_528_425_296));
        assert_eq!(parse("2018-06-07T21:04:56-05:30"), Some(1_528_425_296));
        assert_eq!(parse("2018-06-08t10:34:56.999+08:00"), Some(1_528_425_296));
        assert_eq!(parse("1970-01-01T00:00:00+00:00"), Some(0));
        assert_eq!(parse("2000-02-29T00:00:00Z"), Some(951_782_400));
    }

    #[test]
    fn round_trips_across_years_and_leap_days() {
        for t in [0, 951_782_400, 1_528_425_296, 4_102_444_800, -86_400 * 365 * 100, 253_402_271_999] {
            let text = format_cst(t).expect("in range");
            assert_eq!(parse(&text), Some(t), "{text}");
        }
        let mut t = -2_000_000_000;
        while t < 5_000_000_000 {
            assert_eq!(parse(&format_cst(t).expect("in range")), Some(t));
            t += 86_399 * 17 + 3_601;
        }
    }

    #[test]
    fn refuses_what_is_not_rfc_3339_or_not_a_date() {
        for bad in [
            "",
            "2018-06-08",
            "2018-06-08T10:34:56",
            "2018-06-08 10:34:56+08:00",
            "2018-06-08T10:34:56+0800",
            "2018-06-08T10:34:56+08",
            "2018-06-08T10:34:56.+08:00",
            "2018-06-08T10:34:56+08:00 ",
            "2018-13-08T10:34:56+08:00",
            "2018-00-08T10:34:56+08:00",
            "2018-02-29T10:34:56+08:00",
            "1900-02-29T10:34:56+08:00",
            "2018-04-31T10:34:56+08:00",
            "2018-06-00T10:34:56+08:00",
            "2018-06-08T24:00:00+08:00",
            "2018-06-08T10:60:00+08:00",
            "2018-06-08T10:34:60+08:00",
            "2018-06-08T10:34:56+24:00",
            "2018-06-08T10:34:56+08:60",
            "+018-06-08T10:34:56+08:00",
            "2018-06-08T10:34:5६+08:00",
            "1528425296",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
