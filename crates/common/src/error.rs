//! The error type of `tarn-common`.

/// Errors from configuration, schemas and storage locations.
///
/// Every variant is a user mistake (bad config, bad schema, bad location) and is
/// reported as one clear line by the CLI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is missing, unreadable or invalid.
    #[error("{0}")]
    Config(String),
    /// A schema (`.avsc` or pinned catalog schema) is invalid or unsupported.
    #[error("schema error: {0}")]
    Schema(String),
    /// A storage location (zone root, input path) is invalid.
    #[error("storage error: {0}")]
    Storage(String),
}

/// Result alias for `tarn-common`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
