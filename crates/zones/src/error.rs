//! Errors of the zone pipelines.

/// What can go wrong in a stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A mistake in the dataset's pipeline settings or the request.
    #[error("{0}")]
    Invalid(String),
    /// A `fail` expectation did not hold: nothing was committed.
    #[error("quality gate failed: {0}")]
    QualityGate(String),
    /// Reading or writing a Delta table.
    #[error("{table}: {source}")]
    Delta {
        /// The table's URL.
        table: String,
        /// The delta-rs error.
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    /// Planning or running a DataFusion plan.
    #[error("{context}: {source}")]
    DataFusion {
        /// What was being done.
        context: String,
        /// The DataFusion error.
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },
    /// The metadata store.
    #[error(transparent)]
    Metadata(#[from] tarn_governance::Error),
    /// A tarn bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn delta(table: impl std::fmt::Display, source: deltalake::DeltaTableError) -> Self {
        Error::Delta {
            table: table.to_string(),
            source: Box::new(source),
        }
    }
}

/// Adds context to DataFusion results.
pub(crate) trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, datafusion::error::DataFusionError> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::DataFusion {
            context: what(),
            source: Box::new(source),
        })
    }
}

/// Result of the zone pipelines.
pub type Result<T, E = Error> = std::result::Result<T, E>;
