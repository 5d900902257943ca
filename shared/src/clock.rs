//! The time PAO writes on records: RFC 3339 text, UTC.

/// Now, as RFC 3339 text such as `2026-11-23T15:04:05.123Z`.
pub fn now() -> String {
    aws_smithy_types::DateTime::from(std::time::SystemTime::now())
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}
