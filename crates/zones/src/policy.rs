//! PolicyManager: the zone policies of `tarn.yaml` (with per-dataset
//! overrides), checked before a stage runs and enforced by `tarn policy apply`.
//!
//! - retention: rows older than N days (by a column) are deleted; never on
//!   raw, which is immutable (the config refuses it);
//! - vacuum: files no version references, older than M hours, are removed;
//! - required masking: columns classified e.g. `pii` must be masked by the
//!   cleanse stage before they leave raw;
//! - schema evolution: `strict` stages fail on new upstream columns,
//!   `additive` ones add them.

use std::time::Duration;

use deltalake::DeltaTable;
use serde::Serialize;
use tarn_common::Zone;
use tarn_common::pipeline::Retention;

use crate::error::{Error, Result};
use crate::sql::ident;
use crate::stage::{ZoneContext, counts, register};
use crate::table;

/// Checks that every column of `dataset` whose classification a zone past
/// raw requires masked is masked (or dropped) by its cleanse stage.
pub fn check_masking(ctx: &ZoneContext, dataset: &str) -> Result<()> {
    let Some(ds) = ctx.config.datasets.get(dataset) else {
        return Ok(());
    };
    let cleanse = ds.cleanse.clone().unwrap_or_default();
    for zone in [Zone::Cleansed, Zone::Curated, Zone::Consumption] {
        let policy = ctx.config.policy(zone, dataset);
        for (column, class) in &ds.classifications {
            // `pii` covers `pii` and detected tags such as `pii:email`.
            let required = policy.required_masking.iter().any(|r| {
                class == r
                    || class
                        .strip_prefix(r.as_str())
                        .is_some_and(|s| s.starts_with(':'))
            });
            if !required {
                continue;
            }
            let masked = cleanse.mask.contains_key(column)
                || cleanse.drop.contains(column)
                || cleanse
                    .rename
                    .get(column)
                    .is_some_and(|n| cleanse.mask.contains_key(n));
            if !masked {
                return Err(Error::Invalid(format!(
                    "policies.{zone}.required_masking: column `{column}` of `{dataset}` is \
                     classified `{class}` and must be masked before it leaves raw: add it to \
                     datasets.{dataset}.cleanse.mask (hash, tokenize, redact or {{ partial: N }})"
                )));
            }
        }
    }
    Ok(())
}

/// One thing `policy apply` did (or would do, with `--dry-run`).
#[derive(Debug, Clone, Serialize)]
pub struct PolicyAction {
    /// `zone/table`.
    pub table: String,
    /// `retention` or `vacuum`.
    pub policy: String,
    /// What it means, e.g. `delete rows where timestamp < now() - 1095 days`.
    pub rule: String,
    /// Rows deleted (or that would be).
    pub rows_deleted: u64,
    /// Files removed by vacuum (or that would be).
    pub files_deleted: Vec<String>,
    /// The version a retention delete committed.
    pub version: Option<i64>,
    /// Whether this was only reported.
    pub dry_run: bool,
}

/// Deletes (or, with `dry_run`, counts) the rows of `t` past retention `r`.
/// A quarantine table without the column is skipped (it keeps only what its
/// stage could read); any other table without it is an error.
async fn retention(
    ctx: &ZoneContext,
    t: DeltaTable,
    label: &str,
    r: &Retention,
    dry_run: bool,
    quarantine: bool,
) -> Result<(DeltaTable, Option<PolicyAction>)> {
    let has_column = t
        .snapshot()
        .map(|s| s.schema().field(&r.column).is_some())
        .unwrap_or(false);
    if !has_column {
        if quarantine {
            tracing::warn!(table = %label, "no retention column `{}`; skipped", r.column);
            return Ok((t, None));
        }
        return Err(Error::Invalid(format!(
            "retention of {label}: the table has no column `{}`",
            r.column
        )));
    }
    let predicate = format!(
        "CAST({} AS TIMESTAMP) < CAST(now() AS TIMESTAMP) - INTERVAL '{} days'",
        ident(&r.column),
        r.days
    );
    let session = ctx.session();
    let df = session
        .read_table(table::provider(&t, &session, None).await?)
        .map_err(|e| Error::Internal(e.to_string()))?;
    register(&session, "t", df)?;
    let rows = counts(
        &session,
        &format!("SELECT count(*) FROM t WHERE {predicate}"),
    )
    .await?[0];
    let mut t = t;
    let mut version = None;
    if rows > 0 && !dry_run {
        let url = t.table_url().clone();
        let (nt, _) = t
            .delete()
            .with_predicate(predicate)
            .await
            .map_err(|e| Error::delta(&url, e))?;
        version = Some(table::version(&nt));
        t = nt;
    }
    let action = PolicyAction {
        table: label.to_string(),
        policy: "retention".into(),
        rule: format!(
            "delete rows where {} is older than {} days",
            r.column, r.days
        ),
        rows_deleted: rows,
        files_deleted: Vec::new(),
        version,
        dry_run,
    };
    Ok((t, Some(action)))
}

/// Enforces retention and vacuum on every table of every configured dataset
/// (and its marts), zone by zone.
pub async fn apply(ctx: &ZoneContext, dry_run: bool) -> Result<Vec<PolicyAction>> {
    let mut actions = Vec::new();
    for (dataset, ds) in &ctx.config.datasets {
        let mut tables: Vec<(Zone, String)> = [Zone::Raw, Zone::Cleansed, Zone::Curated]
            .into_iter()
            .flat_map(|z| [(z, dataset.clone()), (z, format!("_quarantine/{dataset}"))])
            .collect();
        if let Some(c) = &ds.consume {
            tables.extend(c.marts.keys().map(|m| (Zone::Consumption, m.clone())));
        }
        for (zone, name) in tables {
            let policy = ctx.config.policy(zone, dataset);
            let url = ctx.table_url(zone, &name);
            let Some(t) = table::load(&url, &ctx.roots.options).await? else {
                continue;
            };
            let label = format!("{zone}/{name}");
            let mut t = t;
            if let Some(r) = &policy.retention {
                if zone == Zone::Raw {
                    return Err(Error::Invalid(
                        "the raw zone is immutable: retention cannot delete from it".into(),
                    ));
                }
                let quarantine = name.starts_with("_quarantine/");
                let (nt, action) = retention(ctx, t, &label, r, dry_run, quarantine).await?;
                t = nt;
                actions.extend(action);
            }
            if let Some(hours) = policy.vacuum_hours {
                let (_, metrics) = t
                    .vacuum()
                    .with_retention_period(
                        chrono::Duration::from_std(Duration::from_secs(hours * 3600))
                            .map_err(|e| Error::Internal(e.to_string()))?,
                    )
                    .with_enforce_retention_duration(false)
                    .with_dry_run(dry_run)
                    .await
                    .map_err(|e| Error::delta(&url, e))?;
                actions.push(PolicyAction {
                    table: label,
                    policy: "vacuum".into(),
                    rule: format!("remove unreferenced files older than {hours} hours"),
                    rows_deleted: 0,
                    files_deleted: metrics.files_deleted,
                    version: None,
                    dry_run,
                });
            }
        }
    }
    Ok(actions)
}
