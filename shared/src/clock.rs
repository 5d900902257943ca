//! The time PAO writes on records: RFC 3339 text, UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, as RFC 3339 text such as `2026-11-23T15:04:05.123456Z`.
pub fn now() -> String {
    at(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default())
}

/// The time `since` the epoch, always with six fractional digits: sort keys
/// and listings order these texts, so text order must be time order
/// (`05.5Z` would sort after `05.55Z`).
fn at(since: Duration) -> String {
    let seconds = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    let whole = aws_smithy_types::DateTime::from_secs(seconds)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default();
    format!(
        "{}.{:06}Z",
        whole.trim_end_matches('Z'),
        since.subsec_micros()
    )
}

/// Seconds from `earlier` (RFC 3339, as [`now`] writes it) until now; `None`
/// when the text is no such time.
pub fn seconds_since(earlier: &str) -> Option<f64> {
    let now = aws_smithy_types::DateTime::from(SystemTime::now());
    Some(now.as_secs_f64() - epoch_seconds(earlier)?)
}

/// Seconds since the epoch of an RFC 3339 text; `None` when it is no time.
pub fn epoch_seconds(text: &str) -> Option<f64> {
    aws_smithy_types::DateTime::from_str(text, aws_smithy_types::date_time::Format::DateTime)
        .ok()
        .map(|time| time.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_time_is_read_back_from_what_now_writes() {
        let elapsed = seconds_since(&now()).unwrap();
        assert!((0.0..5.0).contains(&elapsed), "{elapsed}");
        assert!(seconds_since("2026-01-01T00:00:00Z").unwrap() > 0.0);
        assert_eq!(seconds_since("yesterday"), None);
    }

    #[test]
    fn text_order_is_time_order() {
        let times = [5.0, 5.5, 5.55, 5.000_001, 59.999_999, 60.0, 1e9];
        let texts: Vec<String> = times
            .iter()
            .map(|t| at(Duration::from_secs_f64(*t)))
            .collect();
        assert_eq!(texts[0], "1970-01-01T00:00:05.000000Z");
        assert_eq!(texts[2], "1970-01-01T00:00:05.550000Z");
        let mut sorted = texts.clone();
        sorted.sort();
        let mut by_time = texts.clone();
        by_time.sort_by(|a, b| {
            let (a, b) = (seconds_since(a).unwrap(), seconds_since(b).unwrap());
            b.partial_cmp(&a).unwrap()
        });
        assert_eq!(sorted, by_time);
    }
}
