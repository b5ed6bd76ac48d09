//! The error type of the `tarn` facade.

/// Errors from [`crate::DataLake`] operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration, schema or location mistakes.
    #[error(transparent)]
    Common(#[from] tarn_common::Error),
    /// An ingestion run failed; nothing was committed.
    #[error(transparent)]
    Ingest(#[from] tarn_ingest::Error),
    /// A query failed.
    #[error(transparent)]
    Query(#[from] tarn_query::Error),
    /// A zone stage, policy or optimize failed.
    #[error(transparent)]
    Zones(#[from] tarn_zones::Error),
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] tarn_governance::Error),
    /// A Delta table could not be read.
    #[error("delta table {table}: {source}")]
    Delta {
        /// Table URL.
        table: String,
        /// The delta-rs error.
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    /// The acting principal lacks a privilege; the message names it.
    #[error("{0}")]
    PermissionDenied(String),
    /// A blocking compliance rule failed; the message names the rule and the
    /// dataset.
    #[error("{0}")]
    Compliance(String),
    /// The request is invalid (unknown dataset, unknown source kind, ...).
    #[error("{0}")]
    Invalid(String),
    /// A local file could not be written (by `init` or `demo`).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for the `tarn` facade.
pub type Result<T, E = Error> = std::result::Result<T, E>;
