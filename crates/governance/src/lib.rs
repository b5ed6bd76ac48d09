//! tarn's governance engine: the [`MetadataStore`] (the catalog of datasets,
//! pinned schema versions, runs, table statistics, quality results, lineage
//! facts, access control, the audit log, classifications and erasures, on
//! SQLite (embedded, the default) or PostgreSQL, chosen by URL scheme), the
//! AccessManager's model ([`access`]), lineage graphs and OpenLineage events
//! ([`lineage_graph`], [`openlineage`]) and PII detection ([`classify`]).
//!
//! Depends on `tarn-common` only; ingest, zones and query depend on it.

pub mod access;
pub mod classify;
pub mod compliance;
mod error;
pub mod lineage_graph;
mod model;
pub mod openlineage;
mod sql_access;
mod sql_store;

pub use error::{Error, Result};
pub use model::{
    AuditEvent, AuditFilter, ColumnClassification, ColumnLineage, ColumnStatistics, DatasetRecord,
    ErasedTable, ErasureRecord, IngestionRun, LineageFact, LineageTable, QualityResult, RunStatus,
    SchemaVersion, TableStatistics,
};
pub use sql_store::SqlMetadataStore;

use std::sync::Arc;

use async_trait::async_trait;
use tarn_common::Zone;

use crate::access::{AccessState, ApiToken, Grant, MaskRule, Principal, RowFilterRule};

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

    /// Creates a principal or updates its kind and attributes.
    async fn put_principal(&self, principal: &Principal) -> Result<()>;
    /// Removes a principal with its role memberships, grants and tokens.
    async fn delete_principal(&self, name: &str) -> Result<bool>;
    /// Creates a role (or updates its description).
    async fn put_role(&self, name: &str, description: Option<&str>) -> Result<()>;
    /// Removes a role with its memberships and grants.
    async fn delete_role(&self, name: &str) -> Result<bool>;
    /// Adds `principal` to `role` (or removes it); whether anything changed.
    async fn set_role_member(&self, role: &str, principal: &str, member: bool) -> Result<bool>;
    /// Stores a grant; false if it was already held.
    async fn put_grant(&self, grant: &Grant) -> Result<bool>;
    /// Removes a grant; false if it was not held.
    async fn delete_grant(&self, grant: &Grant) -> Result<bool>;
    /// Stores a column mask (replacing the one for the same column and role).
    async fn put_mask(&self, mask: &MaskRule) -> Result<()>;
    /// Removes a column mask.
    async fn delete_mask(
        &self,
        zone: Zone,
        dataset: &str,
        column: &str,
        role: Option<&str>,
    ) -> Result<bool>;
    /// Stores a row filter (replacing the one with the same id).
    async fn put_row_filter(&self, filter: &RowFilterRule) -> Result<()>;
    /// Removes a row filter.
    async fn delete_row_filter(&self, id: &str) -> Result<bool>;
    /// Every principal, role, grant, mask and row filter.
    async fn access_state(&self) -> Result<AccessState>;

    /// Stores a new API token (its hash only).
    async fn put_token(&self, token: &ApiToken) -> Result<()>;
    /// Every token, oldest first.
    async fn tokens(&self) -> Result<Vec<ApiToken>>;
    /// The token with this hash, recording that it was used now.
    async fn use_token(&self, token_hash: &str) -> Result<Option<ApiToken>>;
    /// Revokes a token; false if it was unknown or already revoked.
    async fn revoke_token(&self, id: &str) -> Result<bool>;

    /// Appends an event to the audit log (which has no update or delete).
    async fn append_audit(&self, event: &AuditEvent) -> Result<()>;
    /// Audit events matching `filter`, newest first.
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>>;

    /// Stores a column's classification (replacing the previous one).
    async fn put_classification(&self, classification: &ColumnClassification) -> Result<()>;
    /// The classifications of a dataset's columns, or of every dataset.
    async fn classifications(&self, dataset: Option<&str>) -> Result<Vec<ColumnClassification>>;

    /// Stores the evidence of an erasure.
    async fn record_erasure(&self, erasure: &ErasureRecord) -> Result<()>;
    /// Every erasure, oldest first.
    async fn erasures(&self) -> Result<Vec<ErasureRecord>>;
}

/// Opens the metadata store named by `url` and brings its schema up to date:
/// `sqlite://path` (created if missing) or `postgresql://…` / `postgres://…`.
pub async fn connect(url: &str) -> Result<Arc<dyn MetadataStore>> {
    Ok(Arc::new(SqlMetadataStore::connect(url).await?))
}
