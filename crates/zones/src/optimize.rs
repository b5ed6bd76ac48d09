//! `tarn optimize`: compacts a table's small files, optionally Z-ordering them
//! by columns so that queries filtering on those columns skip more files.

use std::num::NonZeroU64;

use deltalake::operations::optimize::OptimizeType;
use serde::Serialize;
use tarn_common::Zone;

use crate::error::{Error, Result};
use crate::stage::ZoneContext;
use crate::table;

/// What an optimize did.
#[derive(Debug, Clone, Serialize)]
pub struct OptimizeReport {
    /// `zone/dataset`.
    pub table: String,
    /// Files rewritten.
    pub files_removed: u64,
    /// Files written.
    pub files_added: u64,
    /// Partitions touched.
    pub partitions_optimized: u64,
    /// The version committed, if anything changed.
    pub version: Option<i64>,
}

/// Compacts `dataset` in `zone` into files of about `target_mib`, Z-ordered by
/// `zorder` if given.
pub async fn optimize(
    ctx: &ZoneContext,
    zone: Zone,
    dataset: &str,
    zorder: &[String],
    target_mib: Option<u64>,
) -> Result<OptimizeReport> {
    let url = ctx.table_url(zone, dataset);
    let t = table::load(&url, &ctx.roots.options)
        .await?
        .ok_or_else(|| Error::Invalid(format!("no table {zone}/{dataset} at {url}")))?;
    if let Ok(snapshot) = t.snapshot() {
        let schema = snapshot.schema();
        for c in zorder {
            if schema.field(c).is_none() {
                return Err(Error::Invalid(format!(
                    "--zorder: {zone}/{dataset} has no column `{c}`"
                )));
            }
        }
    }
    let before = table::version(&t);
    let mut builder = t.optimize();
    if !zorder.is_empty() {
        builder = builder.with_type(OptimizeType::ZOrder(zorder.to_vec()));
    }
    if let Some(size) = target_mib.and_then(|m| NonZeroU64::new(m << 20)) {
        builder = builder.with_target_size(size);
    }
    let (t, metrics) = builder.await.map_err(|e| Error::delta(&url, e))?;
    let after = table::version(&t);
    Ok(OptimizeReport {
        table: format!("{zone}/{dataset}"),
        files_removed: metrics.num_files_removed,
        files_added: metrics.num_files_added,
        partitions_optimized: metrics.partitions_optimized,
        version: (after != before).then_some(after),
    })
}
