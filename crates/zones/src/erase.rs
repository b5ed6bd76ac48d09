//! Erasure (the right to be forgotten): delete a data subject's rows from
//! every zone table of some datasets, quarantines included, and vacuum the
//! files that held them.
//!
//! The deletes run upstream first (raw, cleansed, curated, then marts). A
//! stage's table records the upstream version it consumed; the delete in it
//! records the upstream's post-erasure version in the same commit, so the
//! next `tarn process` does not read the rewritten upstream files as new
//! data. That is only correct when each stage had consumed everything
//! before the erasure, so an erasure refuses to run while a stage is behind.

use std::time::Duration;

use deltalake::DeltaTable;
use serde::Serialize;
use tarn_common::Zone;
use tarn_governance::ErasedTable;

use crate::cleansed::app_id;
use crate::error::{Error, Result};
use crate::stage::{ZoneContext, counts, register};
use crate::table;

/// What one erasure should do.
#[derive(Debug, Clone)]
pub struct EraseRequest {
    /// The SQL predicate selecting the subject's rows, e.g. `user_id = 'u123'`.
    pub predicate: String,
    /// The datasets to erase from (every zone table and quarantine of each).
    pub datasets: Vec<String>,
    /// Marts (consumption tables) to erase from as well.
    pub marts: Vec<String>,
    /// Vacuum the removed files now, below the zones' vacuum retention.
    pub override_retention: bool,
    /// Only count what would be deleted.
    pub dry_run: bool,
}

/// A table the erasure left alone, and why.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedTable {
    /// `zone/name`.
    pub table: String,
    /// Why.
    pub reason: String,
}

/// What an erasure did.
#[derive(Debug, Clone, Serialize)]
pub struct EraseReport {
    /// Per table: rows deleted, versions, files vacuumed.
    pub tables: Vec<ErasedTable>,
    /// Tables without the predicate's columns.
    pub skipped: Vec<SkippedTable>,
    /// Files still holding erased rows because the zone's vacuum retention
    /// has not passed (erase again with `override_retention` to remove them).
    pub files_pending: u64,
    /// Whether nothing was changed.
    pub dry_run: bool,
}

/// The stage that writes `zone`, with the zone it reads.
fn stage_of(zone: Zone) -> Option<(&'static str, Zone)> {
    match zone {
        Zone::Cleansed => Some(("cleanse", Zone::Raw)),
        Zone::Curated => Some(("curate", Zone::Cleansed)),
        _ => None,
    }
}

/// Deletes the rows matching `req.predicate` from the datasets' tables.
pub async fn erase(ctx: &ZoneContext, req: &EraseRequest, run_id: &str) -> Result<EraseReport> {
    let options = &ctx.roots.options;
    let mut report = EraseReport {
        tables: Vec::new(),
        skipped: Vec::new(),
        files_pending: 0,
        dry_run: req.dry_run,
    };
    for dataset in &req.datasets {
        // Versions of each zone's main table before and after, to carry the
        // consumed upstream version forward.
        let mut before: Vec<(Zone, i64, i64)> = Vec::new();
        for zone in [Zone::Raw, Zone::Cleansed, Zone::Curated] {
            for name in [dataset.clone(), format!("_quarantine/{dataset}")] {
                let url = ctx.table_url(zone, &name);
                let Some(t) = table::load(&url, options).await? else {
                    continue;
                };
                let quarantine = name.starts_with('_');
                // The upstream version this table must record after the erasure.
                let mut txn = None;
                if let Some((stage, upstream)) = stage_of(zone) {
                    let app = app_id(stage);
                    let consumed = table::consumed_version(&t, &app).await?;
                    if let Some(&(_, up_before, up_after)) =
                        before.iter().find(|(z, _, _)| *z == upstream)
                    {
                        match consumed {
                            Some(c) if c == up_before => {
                                txn = (up_after != up_before).then_some((app, up_after));
                            }
                            Some(c) if c > up_before => {}
                            // A quarantine last written by an older run is not resumed from.
                            Some(_) if quarantine => {}
                            _ => {
                                return Err(Error::Invalid(format!(
                                    "{zone}/{dataset} has not processed {upstream}/{dataset} up \
                                     to version {up_before}; run `tarn process {dataset}` first \
                                     so the erasure covers every row"
                                )));
                            }
                        }
                    }
                }
                let label = format!("{zone}/{name}");
                let erased = erase_table(ctx, t, &label, req, txn, run_id, &mut report).await?;
                if let Some(e) = erased
                    && !quarantine
                {
                    before.push((zone, e.version_before, e.version_after));
                }
            }
        }
    }
    for mart in &req.marts {
        let url = ctx.table_url(Zone::Consumption, mart);
        if let Some(t) = table::load(&url, options).await? {
            let label = format!("consumption/{mart}");
            erase_table(ctx, t, &label, req, None, run_id, &mut report).await?;
        }
    }
    Ok(report)
}

/// Erases from one table; `None` if it lacks the predicate's columns.
async fn erase_table(
    ctx: &ZoneContext,
    t: DeltaTable,
    label: &str,
    req: &EraseRequest,
    txn: Option<(String, i64)>,
    run_id: &str,
    report: &mut EraseReport,
) -> Result<Option<ErasedTable>> {
    let url = t.table_url().clone();
    let version_before = table::version(&t);
    let session = ctx.session();
    let df = session
        .read_table(table::provider(&t, &session, None).await?)
        .map_err(|e| Error::Internal(e.to_string()))?;
    register(&session, "t", df)?;
    let matched = match counts(
        &session,
        &format!("SELECT count(*) FROM t WHERE {}", req.predicate),
    )
    .await
    {
        Ok(c) => c[0],
        Err(e) => {
            let msg = e.to_string();
            if msg.contains("No field named") || msg.contains("not found") {
                report.skipped.push(SkippedTable {
                    table: label.to_string(),
                    reason: "it has no column the predicate uses".into(),
                });
                return Ok(None);
            }
            return Err(Error::Invalid(format!(
                "erase predicate `{}` on {label}: {msg}",
                req.predicate
            )));
        }
    };
    let mut erased = ErasedTable {
        table: label.to_string(),
        url: url.to_string(),
        rows_deleted: matched as i64,
        version_before,
        version_after: version_before,
        files_vacuumed: 0,
    };
    if req.dry_run {
        report.tables.push(erased.clone());
        return Ok(Some(erased));
    }
    let props = table::commit_properties(txn.as_slice(), run_id);
    let t = if matched > 0 {
        let (t, metrics) = t
            .delete()
            .with_predicate(req.predicate.clone())
            .with_commit_properties(props)
            .await
            .map_err(|e| Error::delta(&url, e))?;
        erased.rows_deleted = metrics.num_deleted_rows.map_or(matched as i64, |n| n as i64);
        t
    } else if txn.is_some() {
        // Nothing to delete here, but the upstream moved on: record it.
        table::commit_marker(&t, props).await?;
        table::load(&url, &ctx.roots.options)
            .await?
            .ok_or_else(|| Error::Internal(format!("{label} vanished")))?
    } else {
        t
    };
    erased.version_after = table::version(&t);
    if matched > 0 {
        let zone: Zone = label
            .split('/')
            .next()
            .and_then(|z| z.parse().ok())
            .unwrap_or(Zone::Raw);
        let dataset = label.rsplit('/').next().unwrap_or_default();
        let hours = if req.override_retention {
            0
        } else {
            ctx.config
                .policy(zone, dataset)
                .vacuum_hours
                .unwrap_or(7 * 24)
        };
        let period = chrono::Duration::from_std(Duration::from_secs(hours * 3600))
            .map_err(|e| Error::Internal(e.to_string()))?;
        let (t, metrics) = t
            .vacuum()
            .with_retention_period(period)
            .with_enforce_retention_duration(false)
            .await
            .map_err(|e| Error::delta(&url, e))?;
        erased.files_vacuumed = metrics.files_deleted.len() as i64;
        if !req.override_retention {
            // Files the delete removed are younger than the retention period.
            let (_, pending) = t
                .vacuum()
                .with_retention_period(chrono::Duration::zero())
                .with_enforce_retention_duration(false)
                .with_dry_run(true)
                .await
                .map_err(|e| Error::delta(&url, e))?;
            report.files_pending += pending.files_deleted.len() as u64;
        }
    }
    report.tables.push(erased.clone());
    Ok(Some(erased))
}
