//! The error type of `tarn-query`.

use datafusion::error::DataFusionError;

/// Errors of planning or running a query.
///
/// `Invalid` is the user's mistake (unknown table or column, a bad value, bad
/// SQL); `Internal` is a bug in tarn.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query is wrong: unknown table or column, a bad value, bad SQL.
    #[error("{0}")]
    Invalid(String),
    /// DataFusion failed to plan or run the query.
    #[error("{}", clean(.0))]
    DataFusion(#[from] DataFusionError),
    /// A Delta table could not be read.
    #[error("delta table {table}: {source}")]
    Delta {
        /// Table URL.
        table: String,
        /// The delta-rs error.
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    /// Configuration or storage mistakes.
    #[error(transparent)]
    Common(#[from] tarn_common::Error),
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] tarn_governance::Error),
    /// Writing results failed.
    #[error("cannot write results: {0}")]
    Output(String),
    /// The principal lacks a privilege; the message names it.
    #[error("{0}")]
    PermissionDenied(String),
    /// A bug in tarn.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias for `tarn-query`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn delta(table: impl std::fmt::Display, source: deltalake::DeltaTableError) -> Self {
        Error::Delta {
            table: table.to_string(),
            source: Box::new(source),
        }
    }

    /// Whether this is the user's mistake rather than a failure of the system.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Invalid(_) | Error::PermissionDenied(_) => true,
            Error::DataFusion(e) => matches!(
                e.find_root(),
                DataFusionError::Plan(_)
                    | DataFusionError::SQL(..)
                    | DataFusionError::SchemaError(..)
                    | DataFusionError::NotImplemented(_)
            ),
            _ => false,
        }
    }
}

/// DataFusion's message without its nested "Error during planning: " prefixes
/// repeated by context layers.
fn clean(e: &DataFusionError) -> String {
    e.find_root().to_string()
}
