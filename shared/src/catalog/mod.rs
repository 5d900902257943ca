//! The catalog: items as platform teams write them (schema v2), how a file
//! becomes a validated item with located errors, and the forms items become.

pub mod event;
pub mod form;
pub mod index;
pub mod item;
pub mod memory;
pub mod source;
pub mod validate;
