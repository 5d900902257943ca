//! Health of a PAO function: can it reach what it needs? Owns the report and
//! the rule that one unreachable dependency makes the service unhealthy. It
//! knows dependencies only through [`Probe`]; the SDK calls live in `aws/`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;

/// Why a dependency check failed, in words an operator acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeFailure {
    Unreachable,
    Timeout,
    NotFound,
    AccessDenied,
    Unexpected,
}

/// One dependency check: cheap, read-only, safe to run on every health call.
#[async_trait]
pub trait Probe: Send + Sync {
    /// The name the report shows, such as `dynamodb`.
    fn dependency(&self) -> &'static str;
    async fn check(&self) -> Result<(), ProbeFailure>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DependencyStatus {
    pub reachable: bool,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<ProbeFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    pub status: Status,
    pub version: &'static str,
    /// The dependencies that failed, by name; empty when healthy.
    pub failing: Vec<&'static str>,
    pub dependencies: BTreeMap<&'static str, DependencyStatus>,
}

impl HealthReport {
    pub fn is_healthy(&self) -> bool {
        self.status == Status::Ok
    }
}

/// Runs every probe concurrently, each bounded by `timeout`.
pub struct Health {
    probes: Vec<Arc<dyn Probe>>,
    timeout: Duration,
}

impl Health {
    pub const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    pub fn new(probes: Vec<Arc<dyn Probe>>, timeout: Duration) -> Self {
        Self { probes, timeout }
    }

    pub async fn check(&self) -> HealthReport {
        let checks = self.probes.iter().map(|probe| async move {
            let started = Instant::now();
            let outcome = tokio::time::timeout(self.timeout, probe.check())
                .await
                .unwrap_or(Err(ProbeFailure::Timeout));
            let status = DependencyStatus {
                reachable: outcome.is_ok(),
                latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                failure: outcome.err(),
            };
            (probe.dependency(), status)
        });
        let dependencies: BTreeMap<_, _> = futures::future::join_all(checks)
            .await
            .into_iter()
            .collect();
        let failing: Vec<_> = dependencies
            .iter()
            .filter(|(_, status)| !status.reachable)
            .map(|(name, _)| *name)
            .collect();
        HealthReport {
            status: if failing.is_empty() {
                Status::Ok
            } else {
                Status::Unavailable
            },
            version: Self::VERSION,
            failing,
            dependencies,
        }
    }
}

/// A probe with a fixed answer, for tests of what uses probes.
#[cfg(test)]
pub(crate) struct Fixed(pub &'static str, pub Result<(), ProbeFailure>);

#[cfg(test)]
#[async_trait]
impl Probe for Fixed {
    fn dependency(&self) -> &'static str {
        self.0
    }
    async fn check(&self) -> Result<(), ProbeFailure> {
        self.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Hangs;

    #[async_trait]
    impl Probe for Hangs {
        fn dependency(&self) -> &'static str {
            "s3"
        }
        async fn check(&self) -> Result<(), ProbeFailure> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn healthy_when_every_dependency_answers() {
        let health = Health::new(
            vec![
                Arc::new(Fixed("dynamodb", Ok(()))),
                Arc::new(Fixed("s3", Ok(()))),
            ],
            Duration::from_secs(1),
        );
        let report = health.check().await;
        assert!(report.is_healthy());
        assert!(report.failing.is_empty());
        assert_eq!(report.dependencies.len(), 2);
        assert_eq!(report.version, env!("CARGO_PKG_VERSION"));
    }

    #[tokio::test]
    async fn names_the_failing_dependency_and_why() {
        let health = Health::new(
            vec![
                Arc::new(Fixed("dynamodb", Ok(()))),
                Arc::new(Fixed("stepfunctions", Err(ProbeFailure::NotFound))),
            ],
            Duration::from_secs(1),
        );
        let report = health.check().await;
        assert_eq!(report.status, Status::Unavailable);
        assert_eq!(report.failing, vec!["stepfunctions"]);
        assert_eq!(
            report.dependencies["stepfunctions"].failure,
            Some(ProbeFailure::NotFound)
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["dependencies"]["stepfunctions"]["failure"],
            "not_found"
        );
        assert_eq!(json["status"], "unavailable");
    }

    #[tokio::test]
    async fn a_hanging_dependency_times_out() {
        let health = Health::new(vec![Arc::new(Hangs)], Duration::from_millis(50));
        let report = health.check().await;
        assert_eq!(report.failing, vec!["s3"]);
        assert_eq!(
            report.dependencies["s3"].failure,
            Some(ProbeFailure::Timeout)
        );
    }
}
