//! ProcessingResult: what one `process` run did, stage by stage.

use std::collections::BTreeMap;

use serde::Serialize;

/// The outcome of a stage or of the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageStatus {
    /// Committed its output.
    Succeeded,
    /// Nothing new upstream: nothing read, nothing written.
    Skipped,
    /// Failed; nothing was committed by this stage.
    Failed,
}

/// One stage of one run.
#[derive(Debug, Clone, Serialize)]
pub struct StageResult {
    /// `cleanse`, `curate` or `consume`.
    pub stage: String,
    /// The table written, as `zone/name`.
    pub table: String,
    /// Outcome.
    pub status: StageStatus,
    /// The run id (also in the catalog's runs).
    pub run_id: String,
    /// Rows read from upstream.
    pub rows_in: u64,
    /// Rows handed to the output table.
    pub rows_out: u64,
    /// Rows sent to the stage's quarantine table.
    pub rows_quarantined: u64,
    /// Rows dropped as older duplicates of another row in the same input
    /// (rows_in = rows_out + rows_quarantined + rows_deduplicated).
    pub rows_deduplicated: u64,
    /// The Delta version committed, if any.
    pub version: Option<i64>,
    /// The upstream tables and the versions read (`zone/name` → version).
    pub input_versions: BTreeMap<String, i64>,
    /// Wall time of the stage.
    pub duration_ms: u64,
    /// Why it failed.
    pub error: Option<String>,
}

/// What `process` did for one dataset.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessingResult {
    /// The dataset.
    pub dataset: String,
    /// Failed if any stage failed.
    pub status: StageStatus,
    /// The first failure.
    pub error: Option<String>,
    /// The stages run, in order.
    pub stages: Vec<StageResult>,
}

impl ProcessingResult {
    /// Whether every stage succeeded or was skipped.
    pub fn is_success(&self) -> bool {
        self.status != StageStatus::Failed
    }
}
