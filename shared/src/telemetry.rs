//! One tracing subscriber for every binary: JSON lines, one per event, which
//! is what CloudWatch Logs Insights and the local log files both read best.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber. `RUST_LOG` overrides the default `info` level.
/// Calling it twice (as tests may) is harmless.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}
