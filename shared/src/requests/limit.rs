//! The submission limit: how many new requests one caller may make in a
//! minute. Its port, and the fixed window both of its implementations count
//! in (a clock minute, by epoch seconds). The DynamoDB adapter lives in
//! `aws/submission_limit.rs`, an in-memory one in `memory.rs`.
//!
//! A limit counts requests, not attempts: it is told the id of the request a
//! submission would create, and the same id again in the same minute is not
//! counted again. So the retries of one Idempotency-Key, also many at once,
//! spend one unit of the caller's budget, and a refused submission retried
//! later is counted when it is admitted, not before.

use async_trait::async_trait;

use crate::catalog::index::StoreError;

/// What the limit says of one more request of a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// The caller has made `per_minute` requests in this minute already;
    /// the next minute starts in `retry_after_seconds` (1 to 60).
    Refused {
        per_minute: u32,
        retry_after_seconds: u32,
    },
}

/// A per-caller limit on new requests.
#[async_trait]
pub trait SubmissionLimit: Send + Sync {
    /// Counts request `request_id` of the caller `subject` in the current
    /// minute, unless it is counted there already, and says whether it may
    /// be made. A refused request is not counted.
    async fn admit(&self, subject: &str, request_id: &str) -> Result<Admission, StoreError>;
}

/// The minute a time falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Minutes since the epoch: the window's name.
    pub minute: u64,
    /// Whole seconds until the next window starts, rounded up: 1 to 60.
    pub retry_after_seconds: u32,
    /// When the next window starts, in seconds since the epoch.
    pub ends_at: u64,
}

impl Window {
    pub const SECONDS: u64 = 60;

    pub fn at(epoch_seconds: u64) -> Self {
        let minute = epoch_seconds / Self::SECONDS;
        let into = epoch_seconds % Self::SECONDS;
        Self {
            minute,
            retry_after_seconds: u32::try_from(Self::SECONDS - into).unwrap_or(60),
            ends_at: (minute + 1) * Self::SECONDS,
        }
    }

    /// The window of the system clock's time.
    pub fn now() -> Self {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        Self::at(seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_a_clock_minute_and_says_when_the_next_begins() {
        let start = 29_000_000 * 60;
        let first = Window::at(start);
        assert_eq!(first.minute, 29_000_000);
        assert_eq!(first.retry_after_seconds, 60);
        assert_eq!(first.ends_at, start + 60);
        let last = Window::at(start + 59);
        assert_eq!(last.minute, first.minute);
        assert_eq!(last.retry_after_seconds, 1);
        assert_eq!(Window::at(start + 60).minute, first.minute + 1);
        for second in 0..120 {
            let window = Window::at(start + second);
            assert!((1..=60).contains(&window.retry_after_seconds));
            assert_eq!(
                start + second + u64::from(window.retry_after_seconds),
                window.ends_at
            );
        }
    }
}
