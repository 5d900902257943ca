//! The native drivers: each provisions one AWS action type through the
//! SDK, behind `crate::actions::driver::Driver`, and runs in its own
//! least-privilege function.

pub mod eks;
pub mod network;
pub mod rds;
pub mod secret;
