//! IngestionResult: what an ingest did, in the seed's shape.

use serde::{Deserialize, Serialize};

/// Outcome of an ingestion run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IngestionStatus {
    /// Every record read was written.
    Success,
    /// Committed, with some records quarantined.
    Partial,
    /// Every input had been ingested before; nothing was written.
    Skipped,
}

impl IngestionStatus {
    /// The status of a run that committed with these counts.
    pub fn of(meta: &IngestionMetadata) -> Self {
        if meta.rows_quarantined > 0 {
            IngestionStatus::Partial
        } else {
            IngestionStatus::Success
        }
    }
}

/// Counts and locations of one run. Always `rows_read = rows_written + rows_quarantined`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IngestionMetadata {
    /// Run id.
    pub run_id: String,
    /// Dataset name.
    pub dataset: String,
    /// Records read from the inputs ingested in this run.
    pub rows_read: u64,
    /// Records written to the raw table.
    pub rows_written: u64,
    /// Records sent to quarantine.
    pub rows_quarantined: u64,
    /// Bytes read from the inputs.
    pub bytes_read: u64,
    /// Raw table version committed by this run (`None` if nothing was committed).
    pub delta_version: Option<i64>,
    /// Quarantine table version committed by this run.
    pub quarantine_version: Option<i64>,
    /// Where quarantined records are.
    pub quarantine_location: String,
    /// Files ingested.
    pub files_ingested: usize,
    /// The URLs of the files ingested.
    #[serde(default)]
    pub files: Vec<String>,
    /// Files skipped because they were ingested before.
    pub files_skipped: usize,
    /// The files skipped.
    pub skipped: Vec<String>,
    /// Pinned schema version the data was validated against.
    pub schema_version: i64,
    /// Wall time in seconds.
    pub duration_secs: f64,
}

/// The result of `ingest_data`: status, the table written, metadata and a
/// summary of quarantine reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestionResult {
    /// Outcome.
    pub status: IngestionStatus,
    /// URL of the raw table.
    pub location: String,
    /// Counts, versions and timings.
    pub metadata: IngestionMetadata,
    /// Quarantine reasons with their counts, most frequent first (at most 20).
    pub errors: Vec<String>,
}
