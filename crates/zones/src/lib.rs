//! tarn's zone pipelines (the seed's ZoneManager): raw → cleansed → curated →
//! consumption, as declared per dataset in `tarn.yaml`.
//!
//! - [`cleansed`]: standardization ([`cleanse`]), quarantine of values that
//!   cannot be standardized, deduplication, masking, MERGE upserts;
//! - [`curated`]: enrichment ([`enrich`]), expectations ([`quality`]),
//!   partitioning ([`partition`]);
//! - [`consumption`]: SQL marts, refreshed when their inputs change;
//! - [`policy`]: retention, vacuum, immutability, required masking;
//! - [`optimize`]: compaction and Z-ordering.
//!
//! Every stage is incremental and exactly-once: it reads only what its
//! upstream committed since the version recorded in its own table, and
//! records the new upstream version in the same Delta commit as its output.

pub mod cleanse;
pub mod cleansed;
pub mod consumption;
pub mod curated;
pub mod enrich;
pub mod erase;
mod error;
pub mod optimize;
pub mod partition;
pub mod policy;
pub mod quality;
mod result;
pub mod sql;
mod stage;
pub mod table;
pub mod udf;

pub use consumption::{MartPlan, MartPlanner};
pub use error::{Error, Result};
pub use result::{ProcessingResult, StageResult, StageStatus};
pub use stage::ZoneContext;

use tarn_common::Zone;

/// How far and how `process` runs.
#[derive(Debug, Clone, Copy)]
pub struct ProcessOptions {
    /// The last zone to produce (default: consumption).
    pub until: Zone,
    /// Rebuild each stage from all of its input instead of what is new.
    pub full_refresh: bool,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self {
            until: Zone::Consumption,
            full_refresh: false,
        }
    }
}

/// Runs `dataset`'s stages in order up to `options.until`, stopping at the
/// first failure (later stages are not run).
pub async fn process(
    ctx: &ZoneContext,
    planner: &dyn MartPlanner,
    dataset: &str,
    options: ProcessOptions,
) -> Result<ProcessingResult> {
    if options.until == Zone::Raw {
        return Err(Error::Invalid(
            "--until must be cleansed, curated or consumption".into(),
        ));
    }
    policy::check_masking(ctx, dataset)?;
    let until = Zone::ALL
        .iter()
        .position(|z| *z == options.until)
        .unwrap_or(3);
    let mut stages = cleansed::process(ctx, dataset, options.full_refresh).await?;
    if until >= 2 && stages.iter().all(|s| s.error.is_none()) {
        stages.extend(curated::process(ctx, dataset, options.full_refresh).await?);
    }
    if until >= 3 && stages.iter().all(|s| s.error.is_none()) {
        stages.extend(consumption::process(ctx, planner, dataset, options.full_refresh).await?);
    }
    let error = stages
        .iter()
        .find_map(|s| s.error.as_ref().map(|e| format!("{} stage: {e}", s.stage)));
    Ok(ProcessingResult {
        dataset: dataset.to_string(),
        status: if error.is_some() {
            StageStatus::Failed
        } else if stages.iter().any(|s| s.status == StageStatus::Succeeded) {
            StageStatus::Succeeded
        } else {
            StageStatus::Skipped
        },
        error,
        stages,
    })
}
