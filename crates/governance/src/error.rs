//! The error type of `tarn-governance`.

/// Errors from the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The metadata store URL names a backend tarn does not have.
    #[error(
        "unsupported metadata store URL `{0}` (expected sqlite://PATH or postgresql://USER@HOST/DB)"
    )]
    UnsupportedUrl(String),
    /// The database could not be reached or a statement failed.
    #[error("metadata store {context}: {source}")]
    Database {
        /// What tarn was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Bringing the catalog's tables up to date failed.
    #[error("metadata store migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded (a bug or a hand-edited catalog).
    #[error("metadata store holds an invalid value: {0}")]
    Corrupt(String),
    /// A request tarn cannot carry out (bad argument, unreachable lineage
    /// endpoint, unwritable event file).
    #[error("{0}")]
    Invalid(String),
}

/// Result alias for `tarn-governance`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds what tarn was doing to a driver error.
pub(crate) trait Context<T> {
    fn context(self, what: &str) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, sqlx::Error> {
    fn context(self, what: &str) -> Result<T> {
        self.map_err(|source| Error::Database {
            context: what.to_string(),
            source,
        })
    }
}
