//! Shared pieces of tarn: configuration ([`config`]), dataset schemas ([`schema`]),
//! zone locations and object-store access ([`storage`]) and the common error type.
//!
//! Every other tarn crate depends on this one; it depends on no other tarn crate.

pub mod config;
pub mod error;
pub mod pipeline;
pub mod schema;
pub mod storage;

pub use config::TarnConfig;
pub use error::{Error, Result};
pub use schema::{DatasetSchema, FieldSpec, FieldType};
pub use storage::{Zone, ZoneRoots};
