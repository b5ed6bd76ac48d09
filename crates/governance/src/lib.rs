//! tarn's governance engine. Today it holds the [`MetadataStore`]: the catalog of
//! datasets, their pinned schema versions, their runs, their table
//! statistics, quality results and lineage facts, on SQLite
//! (embedded, the default) or PostgreSQL, chosen by URL scheme.
//!
//! Depends on `tarn-common` only; ingest, zones and query depend on it.

mod error;
mod model;
mod sql_store;

pub use error::{Error, Result};
pub use model::{
    ColumnLineage, ColumnStatistics, DatasetRecord, IngestionRun, LineageFact, LineageTable,
    QualityResult, RunStatus, SchemaVersion, TableStatistics,
};
pub use sql_store::SqlMetadataStore;

use std::sync::Arc;

use async_trait::async_trait;
use tarn_common::Zone;

/// The catalog every tarn operation reads and writes.
///
/// One trait, one conformance suite (`tests/it/metadata.rs`), and a backend per
/// URL scheme; see [`connect`].
#[async_trait]
pub trait MetadataStore: Send + Sync + std::fmt::Debug {
    /// Creates or updates a dataset entry (keyed by name and zone).
    async fn upsert_dataset(&self, dataset: &DatasetRecord) -> Result<()>;
    /// The dataset `name` in `zone`, if registered.
    async fn dataset(&self, name: &str, zone: Zone) -> Result<Option<DatasetRecord>>;
    /// Every registered dataset, ordered by name and zone.
    async fn datasets(&self) -> Result<Vec<DatasetRecord>>;

    /// Pins `schema_avsc` as the dataset's newest schema and returns its version.
    /// If it equals the newest version already pinned, that version is returned
    /// and nothing is added.
    async fn pin_schema(&self, dataset: &str, schema_avsc: &str) -> Result<SchemaVersion>;
    /// The newest pinned schema of a dataset.
    async fn latest_schema(&self, dataset: &str) -> Result<Option<SchemaVersion>>;
    /// All pinned schemas of a dataset, oldest first.
    async fn schema_versions(&self, dataset: &str) -> Result<Vec<SchemaVersion>>;

    /// Records a run as started.
    async fn start_run(&self, run: &IngestionRun) -> Result<()>;
    /// Records a run's outcome (status, counts, version, error, end time).
    async fn finish_run(&self, run: &IngestionRun) -> Result<()>;
    /// The newest runs of a dataset, newest first.
    async fn runs(&self, dataset: &str, limit: usize) -> Result<Vec<IngestionRun>>;
    /// The newest runs of every dataset, newest first.
    async fn recent_runs(&self, limit: usize) -> Result<Vec<IngestionRun>>;

    /// Stores the statistics of a table, replacing older ones.
    async fn put_table_statistics(&self, stats: &TableStatistics) -> Result<()>;
    /// The stored statistics of the table `dataset` in `zone`.
    async fn table_statistics(&self, zone: Zone, dataset: &str) -> Result<Option<TableStatistics>>;
    /// The stored statistics of every table.
    async fn all_table_statistics(&self) -> Result<Vec<TableStatistics>>;

    /// Stores the results of a stage run's quality expectations.
    async fn record_quality(&self, results: &[QualityResult]) -> Result<()>;
    /// The newest quality results of a dataset, newest run first, at most
    /// `limit` runs.
    async fn quality_results(&self, dataset: &str, limit: usize) -> Result<Vec<QualityResult>>;

    /// Stores what a job run read and wrote.
    async fn record_lineage(&self, fact: &LineageFact) -> Result<()>;
    /// Every lineage fact, oldest first.
    async fn lineage_facts(&self) -> Result<Vec<LineageFact>>;
}

/// Opens the metadata store named by `url` and brings its schema up to date:
/// `sqlite://path` (created if missing) or `postgresql://…` / `postgres://…`.
pub async fn connect(url: &str) -> Result<Arc<dyn MetadataStore>> {
    Ok(Arc::new(SqlMetadataStore::connect(url).await?))
}
