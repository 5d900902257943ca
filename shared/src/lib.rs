//! PAO's library crate. The domain lives here (the catalog, requests, the
//! action contract, templates, health), beside one adapter per outside system
//! (`aws/`) and the HTTP edge (`api/`). Function binaries in `functions/` only
//! wire these pieces together.

pub mod action;
pub mod actions;
pub mod api;
pub mod auth;
pub mod aws;
pub mod catalog;
pub mod clock;
pub mod compose;
pub mod config;
pub mod drivers;
pub mod health;
pub mod k8s;
pub mod outbound;
pub mod protect;
pub mod requests;
pub mod selftest;
pub mod telemetry;
pub mod template;
