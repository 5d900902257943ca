//! The actions PAO runs itself: one lifecycle (`lifecycle`) around a driver
//! per action type (`driver`), each behind the contract of `crate::action`.

pub mod driver;
pub mod http;
pub mod jira;
pub mod lifecycle;
pub mod memory;
