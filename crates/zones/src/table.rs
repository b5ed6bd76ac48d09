//! The Delta side of a stage: opening tables, reading what changed upstream
//! since a version, and committing output together with the upstream version
//! it covers (a `txn` action), so that a stage is exactly-once.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU64;
use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::dataframe::DataFrame;
use datafusion::execution::SessionState;
use datafusion::prelude::SessionContext;
use deltalake::delta_datafusion::{DeltaCdfTableProvider, create_session_state_with_spill_config};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Transaction};
use deltalake::logstore::get_actions;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableBuilder};
use tarn_common::config::SchemaEvolution;

use crate::sql::ident;
use url::Url;

use crate::error::{Context, Error, Result};

/// Loads the Delta table at `url`; `None` if there is none.
pub async fn load(url: &Url, options: &HashMap<String, String>) -> Result<Option<DeltaTable>> {
    let err = |e| Error::delta(url, e);
    let mut table = DeltaTableBuilder::from_url(url.clone())
        .map_err(err)?
        .with_storage_options(options.clone())
        .build()
        .map_err(err)?;
    if !table.verify_deltatable_existence().await.map_err(err)? {
        return Ok(None);
    }
    table.load().await.map_err(err)?;
    Ok(Some(table))
}

/// The Delta table at `url` as of `version`.
pub async fn load_version(
    url: &Url,
    options: &HashMap<String, String>,
    version: i64,
) -> Result<DeltaTable> {
    DeltaTableBuilder::from_url(url.clone())
        .map_err(|e| Error::delta(url, e))?
        .with_storage_options(options.clone())
        .with_version(version as u64)
        .load()
        .await
        .map_err(|e| Error::delta(url, e))
}

/// `existing`, or a handle on the table at `url` that does not exist yet,
/// for a first write.
pub fn or_new(
    existing: Option<DeltaTable>,
    url: &Url,
    options: &HashMap<String, String>,
) -> Result<DeltaTable> {
    if let Some(t) = existing {
        return Ok(t);
    }
    DeltaTableBuilder::from_url(url.clone())
        .and_then(|b| b.with_storage_options(options.clone()).build())
        .map_err(|e| Error::delta(url, e))
}

/// The table's current version.
pub fn version(table: &DeltaTable) -> i64 {
    table.version().map_or(-1, |v| v as i64)
}

/// The upstream version last committed under `app_id` in `table`.
pub async fn consumed_version(table: &DeltaTable, app_id: &str) -> Result<Option<i64>> {
    let Ok(state) = table.snapshot() else {
        return Ok(None);
    };
    state
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| Error::delta(table.table_url(), e))
}

/// Commit properties that record `version` of the upstream under `app_id`,
/// plus any further `(app_id, version)` pairs.
pub fn commit_properties(txns: &[(String, i64)], run_id: &str) -> CommitProperties {
    let mut info = serde_json::Map::new();
    info.insert("tarn.run_id".into(), run_id.into());
    CommitProperties::default()
        .with_application_transactions(
            txns.iter()
                .map(|(app, v)| Transaction::new(app, *v))
                .collect::<Vec<_>>(),
        )
        .with_metadata(info)
}

/// The actions of commit `v` of `table`.
async fn commit_actions(table: &DeltaTable, v: i64) -> Result<Vec<Action>> {
    let url = table.table_url();
    let bytes = table
        .log_store()
        .read_commit_entry(v as u64)
        .await
        .map_err(|e| Error::delta(url, e))?
        .ok_or_else(|| Error::Internal(format!("{url}: commit {v} is missing")))?;
    get_actions(v as u64, &bytes).map_err(|e| Error::delta(url, e))
}

/// Whether any commit after `after` up to the table's version has an
/// action `pred` accepts.
async fn any_action_since(
    table: &DeltaTable,
    after: i64,
    pred: impl Fn(&Action) -> bool,
) -> Result<bool> {
    for v in (after + 1)..=version(table) {
        if commit_actions(table, v).await?.iter().any(&pred) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether any commit after `after` removed rows (an overwrite, a delete, a
/// MERGE that updated rows).
pub async fn removed_since(table: &DeltaTable, after: i64) -> Result<bool> {
    any_action_since(
        table,
        after,
        |a| matches!(a, Action::Remove(r) if r.data_change),
    )
    .await
}

/// Whether any commit after `after` changed the table's rows (a compaction
/// or Z-order does not).
pub async fn data_changed_since(table: &DeltaTable, after: i64) -> Result<bool> {
    any_action_since(table, after, |a| match a {
        Action::Add(f) => f.data_change,
        Action::Remove(f) => f.data_change,
        Action::Metadata(_) => true,
        _ => false,
    })
    .await
}

/// The files added by the commits after `after` up to the table's version,
/// that are still part of it (a file removed since is covered by the files
/// that replaced it).
pub async fn added_since(table: &DeltaTable, after: i64) -> Result<Vec<Add>> {
    let url = table.table_url().clone();
    let snapshot = table.snapshot().map_err(|e| Error::delta(&url, e))?;
    let live: HashSet<String> = snapshot
        .log_data()
        .iter()
        .map(|f| f.path().to_string())
        .collect();
    let mut adds = Vec::new();
    for v in (after + 1)..=version(table) {
        for action in commit_actions(table, v).await? {
            if let Action::Add(add) = action
                && add.data_change
                && live.contains(&add.path)
            {
                adds.push(add);
            }
        }
    }
    Ok(adds)
}

/// A provider over the table's current version, restricted to `adds` if given.
pub async fn provider(
    table: &DeltaTable,
    session: &SessionContext,
    adds: Option<Vec<Add>>,
) -> Result<Arc<dyn TableProvider>> {
    let state: Arc<SessionState> = Arc::new(session.state());
    let mut builder = table.table_provider().with_session(state);
    if let Some(adds) = adds {
        builder = builder.with_adds(adds);
    }
    let provider = builder
        .await
        .context(|| format!("scan {}", table.table_url()))?;
    Ok(provider)
}

/// The rows inserted or updated in `table` by the commits after `after` up
/// to the table's loaded version (its change data feed, which tarn turns on
/// for cleansed tables), without the feed's own columns: for a row changed
/// more than once, each image. `_commit_version` is kept so the caller can
/// keep the latest.
pub async fn changes_since(
    table: &DeltaTable,
    session: &SessionContext,
    after: i64,
) -> Result<DataFrame> {
    let builder = table
        .clone()
        .scan_cdf()
        .with_starting_version((after + 1) as u64)
        .with_ending_version(version(table) as u64);
    let provider =
        DeltaCdfTableProvider::try_new(builder).map_err(|e| Error::delta(table.table_url(), e))?;
    let df = session
        .read_table(Arc::new(provider))
        .context(|| format!("read the changes of {}", table.table_url()))?;
    let df = df
        .filter(datafusion::prelude::col("_change_type").in_list(
            vec![
                datafusion::prelude::lit("insert"),
                datafusion::prelude::lit("update_postimage"),
            ],
            false,
        ))
        .context(|| "filter changes".into())?;
    df.drop_columns(&["_change_type", "_commit_timestamp"])
        .context(|| "drop change columns".into())
}

/// How [`write`] writes.
#[derive(Clone, Default)]
pub struct WriteOptions {
    /// Append (default) or overwrite.
    pub overwrite: bool,
    /// Partition columns of a new table.
    pub partition_by: Vec<String>,
    /// Target size of the files written, in bytes.
    pub target_file_size: Option<u64>,
    /// Table properties of a new table.
    pub configuration: HashMap<String, Option<String>>,
    /// Replace the table's schema by the input's (with `overwrite`), or add the
    /// input's new columns.
    pub schema_mode: Option<SchemaMode>,
}

/// Writes `df` to `table` (creating it if needed) in one commit with `props`.
/// The plan runs in a delta-rs session (its write nodes need delta-rs's
/// planner), whatever session `df` was planned in.
pub async fn write(
    table: DeltaTable,
    df: DataFrame,
    options: WriteOptions,
    props: CommitProperties,
) -> Result<DeltaTable> {
    let url = table.table_url().clone();
    let (_, plan) = df.into_parts();
    let state = create_session_state_with_spill_config(Some(crate::stage::MEMORY_LIMIT), None);
    let mode = if options.overwrite {
        SaveMode::Overwrite
    } else {
        SaveMode::Append
    };
    let mut builder = table
        .write(Vec::<RecordBatch>::new())
        .with_input_plan(plan)
        .with_session_state(Arc::new(state))
        .with_save_mode(mode)
        .with_commit_properties(props)
        .with_target_file_size(options.target_file_size.and_then(NonZeroU64::new));
    if !options.partition_by.is_empty() {
        builder = builder.with_partition_columns(options.partition_by);
    }
    if !options.configuration.is_empty() {
        builder = builder.with_configuration(options.configuration);
    }
    if let Some(m) = options.schema_mode {
        builder = builder.with_schema_mode(m);
    }
    builder.await.map_err(|e| Error::delta(&url, e))
}

/// The rows the table's newest commit wrote (its `num_added_rows` metric), or
/// `None` if the commit does not say.
pub async fn rows_written(table: &DeltaTable) -> Result<Option<u64>> {
    use futures::TryStreamExt;
    let mut history: Vec<_> = table
        .history(Some(1))
        .try_collect()
        .await
        .map_err(|e| Error::delta(table.table_url(), e))?;
    Ok(history
        .first_mut()
        .and_then(|c| c.info.remove("operationMetrics"))
        .and_then(|m| m.get("num_added_rows")?.as_u64()))
}

/// Commits nothing but `props` (the consumed upstream version) to `table`:
/// the stage read rows, and every one of them went to quarantine.
pub async fn commit_marker(table: &DeltaTable, props: CommitProperties) -> Result<i64> {
    let url = table.table_url();
    let snapshot = table.snapshot().map_err(|e| Error::delta(url, e))?;
    let done = CommitBuilder::from(props)
        .with_actions(Vec::new())
        .build(
            Some(snapshot),
            table.log_store(),
            DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: None,
                predicate: None,
            },
        )
        .await
        .map_err(|e| Error::delta(url, e))?;
    Ok(done.version as i64)
}

/// How a stage writes its quarantine table: appended to, taking new columns
/// as they come, or rebuilt by a full refresh.
pub fn quarantine_write(full_refresh: bool) -> WriteOptions {
    WriteOptions {
        overwrite: full_refresh,
        schema_mode: Some(if full_refresh {
            SchemaMode::Overwrite
        } else {
            SchemaMode::Merge
        }),
        ..Default::default()
    }
}

/// The write mode that adds new columns, under `additive` evolution.
pub fn additive_columns(evolution: SchemaEvolution) -> Option<SchemaMode> {
    (evolution == SchemaEvolution::Additive).then_some(SchemaMode::Merge)
}

/// Under `strict` evolution, output columns the table lacks are an error.
pub fn check_new_columns(
    table: &DeltaTable,
    columns: &[String],
    evolution: SchemaEvolution,
    url: &url::Url,
) -> Result<()> {
    if evolution == SchemaEvolution::Additive {
        return Ok(());
    }
    let schema = table.snapshot().map_err(|e| Error::delta(url, e))?.schema();
    let new: Vec<&String> = columns
        .iter()
        .filter(|c| schema.field(c).is_none())
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "{url} has no column{} {}: the zone's schema evolution is strict \
         (set `schema_evolution: additive` in the zone's policies to add them)",
        if new.len() > 1 { "s" } else { "" },
        new.iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Upserts `source` into `target` by `keys`. With `order_by`, a newer row
/// (by that column) replaces the stored one and an older one changes nothing;
/// without, the source row always wins. Returns the table and the source rows.
pub async fn merge(
    target: DeltaTable,
    source: datafusion::dataframe::DataFrame,
    columns: &[String],
    keys: &[String],
    order_by: Option<&str>,
    evolution: SchemaEvolution,
    props: deltalake::kernel::transaction::CommitProperties,
) -> Result<(DeltaTable, u64)> {
    let url = target.table_url().clone();
    let on = keys
        .iter()
        .map(|k| format!("target.{0} = source.{0}", ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let err = |e| Error::delta(&url, e);
    let (table, metrics) = target
        .merge(source, on)
        .with_source_alias("source")
        .with_target_alias("target")
        .with_merge_schema(evolution == SchemaEvolution::Additive)
        // Read the source once, as a stream: memory stays bounded however
        // large the increment (delta-rs still prunes target files on the fly).
        .with_streaming(true)
        .with_commit_properties(props)
        .when_matched_update(|mut u| {
            if let Some(order) = order_by.map(ident) {
                u = u.predicate(format!(
                    "source.{order} >= target.{order} OR target.{order} IS NULL"
                ));
            }
            for c in columns {
                u = u.update(
                    datafusion::common::Column::new_unqualified(c),
                    format!("source.{}", ident(c)),
                );
            }
            u
        })
        .map_err(err)?
        .when_not_matched_insert(|mut i| {
            for c in columns {
                i = i.set(
                    datafusion::common::Column::new_unqualified(c),
                    format!("source.{}", ident(c)),
                );
            }
            i
        })
        .map_err(err)?
        .await
        .map_err(err)?;
    Ok((table, metrics.num_source_rows as u64))
}
