//! The error type of `tarn-ingest`.

/// Errors that fail an ingestion run. Nothing is committed when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration, schema or location mistakes.
    #[error(transparent)]
    Common(#[from] tarn_common::Error),
    /// An input cannot be read at all: missing, unreadable or not the declared format.
    #[error("cannot read {file}: {message}")]
    Input {
        /// The file.
        file: String,
        /// Why.
        message: String,
    },
    /// The request itself is invalid (bad spec, unsupported combination).
    #[error("{0}")]
    Invalid(String),
    /// The Delta table could not be read or written.
    #[error("delta table {table}: {source}")]
    Delta {
        /// Table URL.
        table: String,
        /// The delta-rs error.
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] tarn_governance::Error),
    /// A bug in tarn.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias for `tarn-ingest`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn input(file: impl std::fmt::Display, message: impl std::fmt::Display) -> Self {
        Error::Input {
            file: file.to_string(),
            message: message.to_string(),
        }
    }

    pub(crate) fn delta(table: impl std::fmt::Display, source: deltalake::DeltaTableError) -> Self {
        Error::Delta {
            table: table.to_string(),
            source: Box::new(source),
        }
    }
}
