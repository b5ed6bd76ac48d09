//! The `system` schema: the catalog's own records as tables, read fresh on
//! every query.
//!
//! - `system.runs`: ingestion runs, newest first;
//! - `system.statistics`: table and column statistics (one row per column);
//! - `system.cache`: the query cache's counters and size;
//! - `system.audit`: the audit log, newest first.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::catalog::{MemTable, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use serde::Serialize;
use tarn_governance::MetadataStore;

use crate::cache::QueryCache;

/// The schema's name.
pub const SCHEMA: &str = "system";

/// The tables of `system`.
pub const TABLES: [&str; 4] = ["audit", "cache", "runs", "statistics"];

/// Events listed by `system.audit`.
const AUDIT_LIMIT: usize = 100_000;

/// Runs listed by `system.runs`.
const RUNS_LIMIT: usize = 10_000;

/// The `system` schema provider.
#[derive(Debug)]
pub struct SystemSchema {
    metadata: Arc<dyn MetadataStore>,
    cache: Arc<QueryCache>,
}

impl SystemSchema {
    /// `system` over the catalog `metadata` and the engine's `cache`.
    pub fn new(metadata: Arc<dyn MetadataStore>, cache: Arc<QueryCache>) -> Self {
        Self { metadata, cache }
    }

    async fn runs(&self) -> crate::Result<RecordBatch> {
        let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("dataset", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("status", DataType::Utf8, false),
            Field::new("started_at", ts(), false),
            Field::new("ended_at", ts(), true),
            Field::new("rows_read", DataType::Int64, false),
            Field::new("rows_written", DataType::Int64, false),
            Field::new("rows_quarantined", DataType::Int64, false),
            Field::new("bytes_read", DataType::Int64, false),
            Field::new("delta_version", DataType::Int64, true),
            Field::new("error", DataType::Utf8, true),
        ]);
        let runs = self.metadata.recent_runs(RUNS_LIMIT).await?;
        to_batch(schema, &runs)
    }

    async fn audit(&self) -> crate::Result<RecordBatch> {
        #[derive(Serialize)]
        struct Row {
            id: String,
            at: String,
            principal: String,
            action: String,
            target: Option<String>,
            allowed: bool,
            rows: Option<i64>,
            detail: String,
        }
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("principal", DataType::Utf8, false),
            Field::new("action", DataType::Utf8, false),
            Field::new("target", DataType::Utf8, true),
            Field::new("allowed", DataType::Boolean, false),
            Field::new("rows", DataType::Int64, true),
            Field::new("detail", DataType::Utf8, false),
        ]);
        let filter = tarn_governance::AuditFilter {
            limit: Some(AUDIT_LIMIT),
            ..Default::default()
        };
        let rows: Vec<Row> = self
            .metadata
            .audit(&filter)
            .await?
            .into_iter()
            .map(|e| Row {
                id: e.id,
                at: e.at.to_rfc3339(),
                principal: e.principal,
                action: e.action,
                target: e.target,
                allowed: e.allowed,
                rows: e.rows,
                detail: e.detail.to_string(),
            })
            .collect();
        to_batch(schema, &rows)
    }

    async fn statistics(&self) -> crate::Result<RecordBatch> {
        #[derive(Serialize)]
        struct Row<'a> {
            zone: &'a str,
            dataset: &'a str,
            delta_version: i64,
            computed_at: String,
            row_count: u64,
            file_count: u64,
            size_bytes: u64,
            column: &'a str,
            null_count: Option<u64>,
            min: Option<&'a str>,
            max: Option<&'a str>,
            distinct_count: Option<u64>,
            distinct_version: Option<i64>,
        }
        let schema = Schema::new(vec![
            Field::new("zone", DataType::Utf8, false),
            Field::new("dataset", DataType::Utf8, false),
            Field::new("delta_version", DataType::Int64, false),
            Field::new(
                "computed_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("row_count", DataType::UInt64, false),
            Field::new("file_count", DataType::UInt64, false),
            Field::new("size_bytes", DataType::UInt64, false),
            Field::new("column", DataType::Utf8, false),
            Field::new("null_count", DataType::UInt64, true),
            Field::new("min", DataType::Utf8, true),
            Field::new("max", DataType::Utf8, true),
            Field::new("distinct_count", DataType::UInt64, true),
            Field::new("distinct_version", DataType::Int64, true),
        ]);
        let all = self.metadata.all_table_statistics().await?;
        let rows: Vec<Row> = all
            .iter()
            .flat_map(|t| {
                t.columns.iter().map(move |c| Row {
                    zone: t.zone.as_str(),
                    dataset: &t.dataset,
                    delta_version: t.delta_version,
                    computed_at: t.computed_at.to_rfc3339(),
                    row_count: t.row_count,
                    file_count: t.file_count,
                    size_bytes: t.size_bytes,
                    column: &c.name,
                    null_count: c.null_count,
                    min: c.min.as_deref(),
                    max: c.max.as_deref(),
                    distinct_count: c.distinct_count,
                    distinct_version: c.distinct_version,
                })
            })
            .collect();
        to_batch(schema, &rows)
    }

    fn cache_stats(&self) -> crate::Result<RecordBatch> {
        let schema = Schema::new(
            [
                "hits",
                "misses",
                "bypassed",
                "evictions",
                "too_large",
                "entries",
                "bytes",
                "max_bytes",
                "max_entry_bytes",
            ]
            .map(|n| Field::new(n, DataType::UInt64, false))
            .to_vec(),
        );
        to_batch(schema, &[self.cache.stats()])
    }
}

/// Rows (serialized with serde) as a batch of `schema`.
fn to_batch<T: Serialize>(schema: Schema, rows: &[T]) -> crate::Result<RecordBatch> {
    let schema: SchemaRef = Arc::new(schema);
    let mut decoder = ReaderBuilder::new(schema.clone())
        .build_decoder()
        .map_err(|e| crate::Error::Internal(format!("system table: {e}")))?;
    decoder
        .serialize(rows)
        .map_err(|e| crate::Error::Internal(format!("system table: {e}")))?;
    Ok(decoder
        .flush()
        .map_err(|e| crate::Error::Internal(format!("system table: {e}")))?
        .unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|s| s.to_string()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let batch = match name {
            "audit" => self.audit().await,
            "runs" => self.runs().await,
            "statistics" => self.statistics().await,
            "cache" => self.cache_stats(),
            _ => return Ok(None),
        }
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}
