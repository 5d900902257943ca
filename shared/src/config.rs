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

/// Reads variables through a lookup function, so tests need not touch the
/// process environment.
pub struct Env<F: Fn(&str) -> Option<String>>(pub F);

impl Env<fn(&str) -> Option<String>> {
    pub fn process() -> Self {
        Env(|name| std::env::var(name).ok())
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        (self.0)(name)
            .filter(|value| !value.trim().is_empty())
            .ok_or(ConfigError::Missing(name))
    }

    pub fn or(&self, name: &str, default: &str) -> String {
        (self.0)(name)
            .filter(|value| !value.trim().is_empty())
            .unwrap_or_else(|| default.to_string())
    }

    pub fn number(&self, name: &'static str, default: u64) -> Result<u64, ConfigError> {
        match (self.0)(name).filter(|value| !value.trim().is_empty()) {
            None => Ok(default),
            Some(value) => value.trim().parse().map_err(|_| ConfigError::Invalid {
                name,
                reason: format!("`{value}` is not a whole number"),
            }),
        }
    }
}

/// The catalog API's and the ingest function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogConfig {
    pub catalog_table: String,
    pub catalog_bucket: String,
    /// Members may refresh the catalog and see every item.
    pub admin_group: String,
}

impl CatalogConfig {
    pub fn from<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            catalog_table: env.required("PAO_CATALOG_TABLE")?,
            catalog_bucket: env.required("PAO_CATALOG_BUCKET")?,
            admin_group: env.or("PAO_ADMIN_GROUP", "pao-admins"),
        })
    }
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

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(lookup);
        Ok(Self {
            requests_table: env.required(Self::REQUESTS_TABLE)?,
            catalog_bucket: env.required(Self::CATALOG_BUCKET)?,
            selftest_state_machine_arn: env.required(Self::STATE_MACHINE_ARN)?,
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
    fn catalog_settings_have_defaults_and_are_checked() {
        let config = CatalogConfig::from(&Env(lookup(&[
            ("PAO_CATALOG_TABLE", "c"),
            ("PAO_CATALOG_BUCKET", "b"),
        ])))
        .unwrap();
        assert_eq!(config.admin_group, "pao-admins");
        let err = Env(lookup(&[("PAO_EXAMPLE_SECONDS", "soon")]))
            .number("PAO_EXAMPLE_SECONDS", 30)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable PAO_EXAMPLE_SECONDS has an invalid value: `soon` is not a whole number"
        );
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
