//! StatisticsManager: table and column statistics in the catalog.
//!
//! [`refresh`](StatisticsManager::refresh) reads them from the Delta log (row
//! and file counts, bytes, per-column null counts and min/max, summed over the
//! files' statistics); it is cheap and runs after every write.
//! [`analyze`](StatisticsManager::analyze) adds a distinct-count estimate per
//! column (HyperLogLog, DataFusion's `approx_distinct`), which needs a scan.
//!
//! DataFusion gets row counts, null counts and min/max from the Delta log
//! through the table provider, so the planner uses them for join order and
//! pruning whether or not the catalog holds them.

use std::sync::Arc;

use chrono::Utc;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, UInt64Type};
use datafusion::catalog::MemTable;
use datafusion::prelude::SessionContext;
use tarn_common::Zone;
use tarn_governance::{ColumnStatistics, TableStatistics};

use crate::engine::QueryEngine;
use crate::error::{Error, Result};

/// Keeps table statistics in the catalog.
#[derive(Debug, Clone)]
pub struct StatisticsManager {
    engine: QueryEngine,
}

impl StatisticsManager {
    /// Statistics for the tables `engine` reads.
    pub fn new(engine: QueryEngine) -> Self {
        Self { engine }
    }

    /// Recomputes the statistics of `zone.dataset` from its Delta log, keeping
    /// distinct counts from the last `analyze`, and stores them.
    pub async fn refresh(&self, zone: Zone, dataset: &str) -> Result<TableStatistics> {
        let mut stats = self.log_stats(zone, dataset).await?;
        if let Some(old) = self
            .engine
            .metadata()
            .table_statistics(zone, dataset)
            .await?
        {
            for c in &mut stats.columns {
                if let Some(o) = old.columns.iter().find(|o| o.name == c.name) {
                    c.distinct_count = o.distinct_count;
                    c.distinct_version = o.distinct_version;
                }
            }
        }
        self.engine.metadata().put_table_statistics(&stats).await?;
        Ok(stats)
    }

    /// [`refresh`](Self::refresh) plus a distinct-count estimate of every
    /// column whose type allows one (a full scan of the table).
    pub async fn analyze(&self, zone: Zone, dataset: &str) -> Result<TableStatistics> {
        let mut stats = self.log_stats(zone, dataset).await?;
        let table = self.engine.resolver().resolve(zone, dataset).await?;
        let schema = table
            .as_ref()
            .map(datafusion::catalog::TableProvider::schema)
            .ok_or_else(|| Error::Invalid(format!("no table {zone}.{dataset}")))?;
        let countable: Vec<&str> = schema
            .fields()
            .iter()
            .filter(|f| distinct_countable(f.data_type()))
            .map(|f| f.name().as_str())
            .collect();
        if !countable.is_empty() {
            let exprs: Vec<String> = countable
                .iter()
                .map(|c| format!("approx_distinct({})", quote_ident(c)))
                .collect();
            let sql = format!(
                "SELECT {} FROM {}.{}",
                exprs.join(", "),
                quote_ident(zone.as_str()),
                quote_ident(dataset)
            );
            let batches = self.engine.sql(&sql).await?.collect().await?;
            let batch = batches
                .first()
                .ok_or_else(|| Error::Internal("approx_distinct returned no rows".into()))?;
            for (i, name) in countable.iter().enumerate() {
                let col = batch.column(i).as_primitive::<UInt64Type>();
                if let Some(c) = stats.columns.iter_mut().find(|c| c.name == *name) {
                    c.distinct_count = (!col.is_null(0)).then(|| col.value(0));
                    c.distinct_version = Some(stats.delta_version);
                }
            }
        }
        self.engine.metadata().put_table_statistics(&stats).await?;
        Ok(stats)
    }

    /// Table statistics summed over the files of the latest version's log.
    async fn log_stats(&self, zone: Zone, dataset: &str) -> Result<TableStatistics> {
        let table = self
            .engine
            .resolver()
            .open_latest(zone, dataset)
            .await?
            .ok_or_else(|| Error::Invalid(format!("no table {zone}.{dataset}")))?;
        let snapshot = table
            .snapshot()
            .map_err(|e| Error::delta(table.table_url(), e))?;
        let actions = snapshot
            .add_actions_table(true)
            .map_err(|e| Error::delta(table.table_url(), e))?;
        let columns: Vec<String> = snapshot
            .schema()
            .fields()
            .map(|f| f.name().to_string())
            .collect();
        let size = crate::catalog::table_size(&table);
        Ok(TableStatistics {
            zone,
            dataset: dataset.to_string(),
            delta_version: table.version().map_or(0, |v| v as i64),
            computed_at: Utc::now(),
            row_count: size.rows,
            file_count: size.files,
            size_bytes: size.bytes,
            columns: column_stats(actions, &columns).await?,
        })
    }
}

/// Per-column null counts and min/max over the add actions (one row per file,
/// flattened `null_count.c`, `min.c`, `max.c` and `partition.c` columns). A
/// figure is given only when every file recorded it.
async fn column_stats(actions: RecordBatch, columns: &[String]) -> Result<Vec<ColumnStatistics>> {
    let ctx = SessionContext::new();
    let has = |c: &str| actions.schema().field_with_name(c).is_ok();
    let mut exprs = vec!["count(*)".to_string()];
    for c in columns {
        let partition = format!("partition.{c}");
        for (kind, agg) in [("null_count", "sum"), ("min", "min"), ("max", "max")] {
            let name = format!("{kind}.{c}");
            let expr = if has(&partition) {
                // A partition column: its value is in the log, one per file.
                let p = quote_ident(&partition);
                if kind == "null_count" {
                    format!(
                        "CAST(sum(CASE WHEN {p} IS NULL THEN num_records ELSE 0 END) AS VARCHAR)"
                    )
                } else {
                    format!("CAST({agg}({p}) AS VARCHAR)")
                }
            } else if has(&name) {
                let q = quote_ident(&name);
                format!("CASE WHEN count({q}) = count(*) THEN CAST({agg}({q}) AS VARCHAR) END")
            } else {
                "CAST(NULL AS VARCHAR)".into()
            };
            exprs.push(format!("{expr} AS s{}", exprs.len()));
        }
    }
    ctx.register_table(
        "actions",
        Arc::new(MemTable::try_new(actions.schema(), vec![vec![actions]])?),
    )?;
    let batches = ctx
        .sql(&format!("SELECT {} FROM actions", exprs.join(", ")))
        .await?
        .collect()
        .await?;
    let row = batches
        .first()
        .ok_or_else(|| Error::Internal("no statistics row".into()))?;
    let text = |i: usize| -> Option<String> {
        let col = row.column(i);
        let col = datafusion::arrow::compute::cast(col, &DataType::Utf8).ok()?;
        let s = col.as_string::<i32>();
        (!s.is_null(0)).then(|| s.value(0).to_string())
    };
    Ok(columns
        .iter()
        .enumerate()
        .map(|(i, name)| ColumnStatistics {
            name: name.clone(),
            null_count: text(1 + 3 * i).and_then(|s| s.parse().ok()),
            min: text(2 + 3 * i),
            max: text(3 + 3 * i),
            distinct_count: None,
            distinct_version: None,
        })
        .collect())
}

/// Types `approx_distinct` accepts.
fn distinct_countable(t: &DataType) -> bool {
    t.is_integer()
        || matches!(
            t,
            DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::Date32
                | DataType::Date64
                | DataType::Timestamp(..)
        )
}

/// `name` as an SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
