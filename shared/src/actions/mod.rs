//! The actions PAO runs itself, each behind the contract of `crate::action`.

pub mod http;
pub mod jira;
pub mod runner;
