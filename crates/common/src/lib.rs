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

/// Ends the process on the spot if `TARN_FAILPOINT` names `point`: a crash at
/// a chosen place, for the tests of exactly-once recovery (a SIGKILL at a
/// random time rarely lands between two commits).
pub fn failpoint(point: &str) {
    if std::env::var("TARN_FAILPOINT").is_ok_and(|p| p == point) {
        eprintln!("TARN_FAILPOINT={point}: aborting");
        std::process::abort();
    }
}
