//! Configuration of a function, read once at start-up from the environment.
//! A missing variable stops the process with a message naming it, rather than
//! failing later inside a request.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("missing environment variable {0}")]
    Missing(&'static str),
    #[error("environment variable {name} has an invalid value: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// The names of the deployed resources a function talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub requests_table: String,
    pub catalog_bucket: String,
    pub selftest_state_machine_arn: String,
}

impl Resources {
    pub const REQUESTS_TABLE: &'static str = "PAO_REQUESTS_TABLE";
    pub const CATALOG_BUCKET: &'static str = "PAO_CATALOG_BUCKET";
    pub const STATE_MACHINE_ARN: &'static str = "PAO_SELFTEST_STATE_MACHINE_ARN";

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests need not touch the
    /// process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            lookup(name)
                .filter(|value| !value.trim().is_empty())
                .ok_or(ConfigError::Missing(name))
        };
        Ok(Self {
            requests_table: required(Self::REQUESTS_TABLE)?,
            catalog_bucket: required(Self::CATALOG_BUCKET)?,
            selftest_state_machine_arn: required(Self::STATE_MACHINE_ARN)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn reads_every_resource_name() {
        let resources = Resources::from_lookup(lookup(&[
            (Resources::REQUESTS_TABLE, "t"),
            (Resources::CATALOG_BUCKET, "b"),
            (Resources::STATE_MACHINE_ARN, "arn:sm"),
        ]))
        .unwrap();
        assert_eq!(resources.requests_table, "t");
        assert_eq!(resources.catalog_bucket, "b");
        assert_eq!(resources.selftest_state_machine_arn, "arn:sm");
    }

    #[test]
    fn names_the_missing_variable() {
        let err = Resources::from_lookup(lookup(&[
            (Resources::REQUESTS_TABLE, "t"),
            (Resources::CATALOG_BUCKET, "  "),
        ]))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing environment variable PAO_CATALOG_BUCKET"
        );
    }
}
