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
    // Refuse before touching anything.
    for dataset in &req.datasets {
        check_caught_up(ctx, dataset).await?;
    }
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
                    // A quarantine last written by an older run is not resumed
                    // from, so only a record of the latest upstream moves on.
                    if let Some(&(_, up_before, up_after)) =
                        before.iter().find(|(z, _, _)| *z == upstream)
                        && consumed == Some(up_before)
                        && up_after != up_before
                    {
                        txn = Some((app, up_after));
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

/// Refuses an erasure while a stage of `dataset` has not consumed all of
/// its upstream: the rows it has yet to read would come back after it.
async fn check_caught_up(ctx: &ZoneContext, dataset: &str) -> Result<()> {
    let options = &ctx.roots.options;
    for zone in [Zone::Cleansed, Zone::Curated] {
        let Some((stage, upstream)) = stage_of(zone) else {
            continue;
        };
        let (Some(t), Some(up)) = (
            table::load(&ctx.table_url(zone, dataset), options).await?,
            table::load(&ctx.table_url(upstream, dataset), options).await?,
        ) else {
            continue;
        };
        let consumed = table::consumed_version(&t, &app_id(stage)).await?;
        let latest = table::version(&up);
        if consumed != Some(latest) {
            return Err(Error::Invalid(format!(
                "{zone}/{dataset} has not processed {upstream}/{dataset} up to version \
                 {latest}; run `tarn process {dataset}` first so the erasure covers every \
                 row (nothing was erased)"
            )));
        }
    }
    Ok(())
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
    let predicate = match label.strip_prefix("raw/_quarantine/") {
        Some(dataset) => {
            match raw_quarantine_predicate(ctx, &session, dataset, label, req, report).await? {
                Some(p) => p,
                None => return Ok(None),
            }
        }
        None => req.predicate.clone(),
    };
    let matched = match counts(
        &session,
        &format!("SELECT count(*) FROM t WHERE {predicate}"),
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
            .with_predicate(predicate)
            .with_commit_properties(props)
            .await
            .map_err(|e| Error::delta(&url, e))?;
        erased.rows_deleted = metrics
            .num_deleted_rows
            .map_or(matched as i64, |n| n as i64);
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

/// The raw quarantine keeps rejected records as text (`payload`: the CSV
/// line or a JSON object). Each is parsed back into the raw table's columns
/// (values that do not convert become null) and the erase predicate is
/// evaluated on that; the result is a predicate on `(source, position)`
/// selecting the matching records, or `None` when the raw table is missing.
/// Records whose payload cannot be parsed are counted in `report.skipped`.
async fn raw_quarantine_predicate(
    ctx: &ZoneContext,
    session: &datafusion::prelude::SessionContext,
    dataset: &str,
    label: &str,
    req: &EraseRequest,
    report: &mut EraseReport,
) -> Result<Option<String>> {
    use datafusion::arrow::array::{
        Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray,
    };
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    let Some(raw) = table::load(&ctx.table_url(Zone::Raw, dataset), &ctx.roots.options).await?
    else {
        return Ok(None);
    };
    let raw_schema = table::provider(&raw, session, None).await?.schema();
    let fields: Vec<&Field> = raw_schema
        .fields()
        .iter()
        .map(|f| f.as_ref())
        // tarn's own columns (`_ingest_*`, `_partition_date`) are not in payloads.
        .filter(|f| !f.name().starts_with('_'))
        .collect();
    let internal = |e: datafusion::error::DataFusionError| Error::Internal(e.to_string());
    let rows = session
        .sql("SELECT source, position, payload FROM t")
        .await
        .map_err(internal)?
        .collect()
        .await
        .map_err(internal)?;
    let mut keys: Vec<(String, i64)> = Vec::new();
    let mut values: Vec<Vec<Option<String>>> = vec![Vec::new(); fields.len()];
    let mut unparsed = 0;
    for b in &rows {
        let source = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let payload = datafusion::arrow::compute::cast(b.column(2), &DataType::Utf8)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let (source, payload) = (source.as_string::<i32>(), payload.as_string::<i32>());
        let position = b
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            let Some(parsed) = parse_payload(payload.value(i), &fields) else {
                unparsed += 1;
                continue;
            };
            keys.push((source.value(i).to_string(), position.value(i)));
            for (col, v) in values.iter_mut().zip(parsed) {
                col.push(v);
            }
        }
    }
    if unparsed > 0 {
        report.skipped.push(SkippedTable {
            table: label.to_string(),
            reason: format!(
                "{unparsed} quarantined record(s) could not be parsed to test the predicate; \
                 review them by hand"
            ),
        });
    }
    if keys.is_empty() {
        return Ok(Some("false".into()));
    }
    let mut columns: Vec<ArrayRef> = Vec::new();
    let mut schema_fields = Vec::new();
    for (f, vals) in fields.iter().zip(values) {
        let text: ArrayRef = std::sync::Arc::new(StringArray::from(vals));
        let typed = datafusion::arrow::compute::cast(&text, f.data_type()).unwrap_or_else(|_| {
            datafusion::arrow::array::new_null_array(f.data_type(), text.len())
        });
        columns.push(typed);
        schema_fields.push(Field::new(f.name(), f.data_type().clone(), true));
    }
    columns.push(std::sync::Arc::new(Int64Array::from_iter_values(
        0..keys.len() as i64,
    )));
    schema_fields.push(Field::new("__tarn_row", DataType::Int64, false));
    let batch = RecordBatch::try_new(std::sync::Arc::new(Schema::new(schema_fields)), columns)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let df = session.read_batch(batch).map_err(internal)?;
    register(session, "payloads", df)?;
    let hits = session
        .sql(&format!(
            "SELECT __tarn_row FROM payloads WHERE {}",
            req.predicate
        ))
        .await
        .map_err(|e| {
            Error::Invalid(format!(
                "erase predicate `{}` on {label}: {e}",
                req.predicate
            ))
        })?
        .collect()
        .await
        .map_err(internal)?;
    let mut by_source: std::collections::BTreeMap<&str, Vec<i64>> = Default::default();
    for b in &hits {
        let rows = b
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        for r in rows.values() {
            let (source, position) = &keys[*r as usize];
            by_source.entry(source).or_default().push(*position);
        }
    }
    if by_source.is_empty() {
        return Ok(Some("false".into()));
    }
    Ok(Some(
        by_source
            .into_iter()
            .map(|(source, positions)| {
                let list: Vec<String> = positions.iter().map(i64::to_string).collect();
                format!(
                    "(source = {} AND position IN ({}))",
                    crate::sql::string(source),
                    list.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join(" OR "),
    ))
}

/// A quarantined record's values per raw column: from a JSON object by
/// name, or from a CSV line by position (when the field count matches; the
/// columns are taken in the schema's order, which is the header's order for
/// files whose schema was inferred or written to match).
fn parse_payload(
    payload: &str,
    fields: &[&datafusion::arrow::datatypes::Field],
) -> Option<Vec<Option<String>>> {
    let text = payload.trim();
    if text.starts_with('{') {
        let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).ok()?;
        return Some(
            fields
                .iter()
                .map(|f| match obj.get(f.name()) {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(v) => Some(v.to_string()),
                })
                .collect(),
        );
    }
    let values = split_csv_line(text);
    (values.len() == fields.len()).then(|| {
        values
            .into_iter()
            .map(|v| Some(v).filter(|v| !v.is_empty()))
            .collect()
    })
}

/// Splits one CSV line on commas, honouring double quotes (`""` inside quotes).
fn split_csv_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    out.push(field);
    out
}
