//! PAO's library crate. The domain lives here (health, the action contract, and
//! later the catalog, requests and fulfilment), beside one adapter per outside
//! system. Function binaries in `functions/` only wire these pieces together.

pub mod action;
pub mod api;
pub mod aws;
pub mod catalog;
pub mod config;
pub mod health;
pub mod selftest;
pub mod telemetry;
pub mod template;
