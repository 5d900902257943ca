//! The native drivers: each provisions one AWS action type through the
//! SDK, behind `crate::actions::driver::Driver`, and runs in its own
//! least-privilege function.
