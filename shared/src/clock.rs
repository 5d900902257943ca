//! The time PAO writes on records: RFC 3339 text, UTC.

/// Now, as RFC 3339 text such as `2026-11-23T15:04:05.123Z`.
pub fn now() -> String {
    aws_smithy_types::DateTime::from(std::time::SystemTime::now())
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

/// Seconds from `earlier` (RFC 3339, as [`now`] writes it) until now; `None`
/// when the text is no such time.
pub fn seconds_since(earlier: &str) -> Option<f64> {
    let then = aws_smithy_types::DateTime::from_str(
        earlier,
        aws_smithy_types::date_time::Format::DateTime,
    )
    .ok()?;
    let now = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
    Some(now.as_secs_f64() - then.as_secs_f64())
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
}
