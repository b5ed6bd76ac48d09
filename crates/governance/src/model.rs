//! The records the metadata store holds.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tarn_common::Zone;

/// A dataset in one zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRecord {
    /// Dataset name, e.g. `user_events`.
    pub name: String,
    /// The zone its table is in.
    pub zone: Zone,
    /// The table's URL.
    pub location: String,
    /// Owning team or person.
    pub owner: Option<String>,
    /// What it holds.
    pub description: Option<String>,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// When it was first registered.
    pub created_at: DateTime<Utc>,
    /// When it was last updated.
    pub updated_at: DateTime<Utc>,
}

/// A pinned schema version of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaVersion {
    /// Dataset name.
    pub dataset: String,
    /// 1 for the first schema, then increasing.
    pub version: i64,
    /// The schema as Avro JSON.
    pub schema_avsc: String,
    /// A hash of the schema text.
    pub fingerprint: String,
    /// When it was pinned.
    pub created_at: DateTime<Utc>,
}

/// The state of an ingestion run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Started and not finished (or the process died).
    Running,
    /// Everything read was written.
    Success,
    /// Committed, with some records quarantined.
    Partial,
    /// Nothing new to ingest.
    Skipped,
    /// Failed; nothing was committed.
    Failed,
}

impl RunStatus {
    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Partial => "partial",
            RunStatus::Skipped => "skipped",
            RunStatus::Failed => "failed",
        }
    }

    /// Parses a stored status.
    pub fn parse(s: &str) -> Option<Self> {
        [
            RunStatus::Running,
            RunStatus::Success,
            RunStatus::Partial,
            RunStatus::Skipped,
            RunStatus::Failed,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One ingestion run and its reconciled counts (read = written + quarantined).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestionRun {
    /// Run id (a UUID).
    pub id: String,
    /// Dataset name.
    pub dataset: String,
    /// What was read, e.g. `file:incoming/*.csv`.
    pub source: String,
    /// Outcome.
    pub status: RunStatus,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time, once finished.
    pub ended_at: Option<DateTime<Utc>>,
    /// Records read.
    pub rows_read: i64,
    /// Records written to the raw table.
    pub rows_written: i64,
    /// Records quarantined.
    pub rows_quarantined: i64,
    /// Bytes read from the source.
    pub bytes_read: i64,
    /// The raw table's Delta version this run committed.
    pub delta_version: Option<i64>,
    /// Why the run failed.
    pub error: Option<String>,
}

/// Statistics of one table at one Delta version, kept by the query engine's
/// StatisticsManager (from the Delta log on every write, and by `tarn analyze`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableStatistics {
    /// The zone of the table.
    pub zone: Zone,
    /// Dataset (table) name.
    pub dataset: String,
    /// The Delta version the numbers describe.
    pub delta_version: i64,
    /// When they were computed.
    pub computed_at: DateTime<Utc>,
    /// Rows in the table.
    pub row_count: u64,
    /// Data files in the table.
    pub file_count: u64,
    /// Bytes of data files.
    pub size_bytes: u64,
    /// Per-column statistics, in table column order.
    pub columns: Vec<ColumnStatistics>,
}

/// Statistics of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnStatistics {
    /// Column name.
    pub name: String,
    /// Nulls, when every file recorded them.
    pub null_count: Option<u64>,
    /// Smallest value, as text, when every file recorded it.
    pub min: Option<String>,
    /// Largest value, as text, when every file recorded it.
    pub max: Option<String>,
    /// Estimated number of distinct values (HyperLogLog), from the last
    /// `analyze`.
    pub distinct_count: Option<u64>,
    /// The Delta version `distinct_count` was computed at.
    pub distinct_version: Option<i64>,
}

/// The outcome of one quality expectation in one stage run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityResult {
    /// The stage run that evaluated it.
    pub run_id: String,
    /// Dataset name.
    pub dataset: String,
    /// The stage, e.g. `curate`.
    pub stage: String,
    /// The expectation's name from `tarn.yaml`.
    pub expectation: String,
    /// Its kind, e.g. `not_null`, `between`, `freshness`.
    pub check: String,
    /// `warn`, `quarantine` or `fail`.
    pub severity: String,
    /// Whether every evaluated row (or the table-level check) passed.
    pub passed: bool,
    /// Rows the expectation looked at.
    pub evaluated_rows: i64,
    /// Rows that failed it (0 for a passing table-level check, 1 for a failing one
    /// if it is not about rows).
    pub failed_rows: i64,
    /// What was measured, for table-level checks (e.g. the row count, the newest
    /// timestamp).
    pub observed: Option<String>,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// A table at a Delta version, as a lineage endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineageTable {
    /// `zone/dataset`, e.g. `cleansed/user_events`.
    pub table: String,
    /// The Delta version read or written.
    pub version: Option<i64>,
}

/// One output column and the input columns it is computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnLineage {
    /// The output column.
    pub column: String,
    /// `zone/dataset.column` of every input column it depends on.
    pub inputs: Vec<String>,
    /// How: `identity` (copied or renamed) or `transformation`.
    pub kind: String,
}

/// What one job run read and wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineageFact {
    /// The run (same id as its entry in the runs).
    pub run_id: String,
    /// The job, e.g. `cleanse:user_events` or `consume:daily_purchases`.
    pub job: String,
    /// Tables read, with the versions.
    pub inputs: Vec<LineageTable>,
    /// Tables written, with the versions committed.
    pub outputs: Vec<LineageTable>,
    /// Column-level mapping of the (first) output, where derivable.
    pub columns: Vec<ColumnLineage>,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unique, time-ordered id (UUID v7).
    pub id: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it.
    pub principal: String,
    /// What: `query`, `ingest`, `process`, `grant`, `revoke`, `mask`,
    /// `row_filter`, `principal`, `role`, `token_create`, `token_revoke`,
    /// `token_use`, `classify`, `erase`.
    pub action: String,
    /// On what (a table, a principal, a dataset), if anything.
    pub target: Option<String>,
    /// Whether it was allowed.
    pub allowed: bool,
    /// Rows returned, written or deleted, where that applies.
    pub rows: Option<i64>,
    /// Action-specific details (query text and plan hash, tables and columns
    /// read, the denial reason, ...).
    pub detail: serde_json::Value,
}

impl AuditEvent {
    /// A new event stamped now.
    pub fn now(principal: &str, action: &str, target: Option<String>, allowed: bool) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            at: Utc::now(),
            principal: principal.to_string(),
            action: action.to_string(),
            target,
            allowed,
            rows: None,
            detail: serde_json::Value::Object(Default::default()),
        }
    }
}

/// Which audit events to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this principal's.
    pub principal: Option<String>,
    /// Only these actions.
    pub action: Option<String>,
    /// Only at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// At most this many, newest first (`None`: all).
    pub limit: Option<usize>,
}

/// A column's classification tag, detected or set by a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnClassification {
    /// Dataset name.
    pub dataset: String,
    /// Column name.
    pub column: String,
    /// e.g. `pii:email`; `none` when a person cleared it.
    pub tag: String,
    /// 0..=1; 1 for a person's decision.
    pub confidence: f64,
    /// `auto` (detected on ingest) or `manual` (`tarn classify --set/--clear`).
    pub source: String,
    /// Why (never the sampled values).
    pub evidence: String,
    /// When it was set.
    pub updated_at: DateTime<Utc>,
}

/// The evidence of one erasure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErasureRecord {
    /// Unique id.
    pub id: String,
    /// When it ran.
    pub at: DateTime<Utc>,
    /// Who ran it.
    pub principal: String,
    /// The predicate, e.g. `user_id = 'u123'`.
    pub predicate: String,
    /// What it did to each table.
    pub tables: Vec<ErasedTable>,
}

/// What an erasure did to one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasedTable {
    /// `zone/dataset`, or `zone/_quarantine/dataset`.
    pub table: String,
    /// The table's URL.
    pub url: String,
    /// Rows deleted.
    pub rows_deleted: i64,
    /// The version before the erasure.
    pub version_before: i64,
    /// The version the delete committed (versions before it are no longer
    /// readable); equal to `version_before` when nothing matched.
    pub version_after: i64,
    /// Files the vacuum removed.
    pub files_vacuumed: i64,
}
