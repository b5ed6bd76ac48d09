//! ZoneRouter for the raw zone: opens or creates a dataset's Delta table and
//! commits staged files together with the source positions they cover.

use std::collections::HashMap;

use arrow::datatypes::SchemaRef;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitConflictError, CommitProperties, TransactionError};
use deltalake::kernel::{StructType, Transaction};
use deltalake::operations::create::CreateBuilder;
use deltalake::protocol::SaveMode;
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use url::Url;

use crate::error::{Error, Result};

/// Target size of the Parquet files tarn writes.
const TARGET_FILE_SIZE: u64 = 256 << 20;

/// Loads the Delta table at `url`; `None` if there is no table there.
pub async fn load_table(
    url: &Url,
    options: &HashMap<String, String>,
) -> Result<Option<DeltaTable>> {
    let err = |e: DeltaTableError| Error::delta(url, e);
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

/// Opens the Delta table at `url`, creating it with `schema` if it does not exist.
pub(crate) async fn open_or_create(
    url: &Url,
    options: &HashMap<String, String>,
    schema: &SchemaRef,
    partition_columns: &[String],
    name: &str,
) -> Result<DeltaTable> {
    match load_table(url, options).await? {
        Some(t) => Ok(t),
        None => {
            let kernel: StructType = schema
                .as_ref()
                .try_into_kernel()
                .map_err(|e| Error::Internal(format!("delta schema: {e}")))?;
            let created = CreateBuilder::new()
                .with_location(url.as_str())
                .with_storage_options(options.clone())
                .with_table_name(name)
                .with_columns(kernel.fields().cloned())
                .with_partition_columns(partition_columns.iter().cloned())
                .with_save_mode(SaveMode::Ignore)
                .await;
            match created {
                Ok(t) => Ok(t),
                // Another ingest created it first (a commit conflict on version 0):
                // use theirs.
                Err(e) => match load_table(url, options).await? {
                    Some(t) => Ok(t),
                    None => Err(Error::delta(url, e)),
                },
            }
        }
    }
}

/// The schema of the table's current version.
fn table_schema(table: &DeltaTable, url: &Url) -> Result<StructType> {
    table
        .snapshot()
        .map_err(|e| Error::delta(url, e))?
        .metadata()
        .parse_schema()
        .map_err(|e| Error::Internal(format!("delta schema of {url}: {e}")))
}

/// Identifies a source file in `txn` actions.
pub(crate) fn file_app_id(url: &str, size: u64, content_hash: &str) -> String {
    let id = blake3::hash(format!("{url}\n{size}\n{content_hash}").as_bytes()).to_hex();
    format!("tarn-file-{}", &id[..32])
}

/// The `txn` version recorded for `app_id` in `table`, if any.
pub(crate) async fn committed_version(table: &DeltaTable, app_id: &str) -> Result<Option<i64>> {
    let Ok(state) = table.snapshot() else {
        return Ok(None);
    };
    state
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| Error::delta(table.table_url(), e))
}

/// Snappy-compressed Parquet. Columns whose values are (nearly) all distinct,
/// such as `_ingest_source`, get no dictionary: it would only cost time before
/// the writer falls back to plain encoding.
fn writer_properties(unique_columns: &[String]) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_created_by(format!("tarn {}", env!("CARGO_PKG_VERSION")))
        .set_compression(Compression::SNAPPY)
        .set_column_dictionary_enabled(ColumnPath::from(crate::columns::SOURCE), false)
        // `file:line` values share their file prefix: store only what differs.
        .set_column_encoding(
            ColumnPath::from(crate::columns::SOURCE),
            Encoding::DELTA_BYTE_ARRAY,
        )
        // Its min/max (`a.csv:10` < `a.csv:9`) would skip nothing.
        .set_column_statistics_enabled(
            ColumnPath::from(crate::columns::SOURCE),
            EnabledStatistics::None,
        );
    for c in unique_columns {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c.as_str()), false);
    }
    b.build()
}

fn batch_writer(table: &DeltaTable, unique_columns: &[String]) -> Result<RecordBatchWriter> {
    Ok(RecordBatchWriter::for_table(table)
        .map_err(|e| Error::delta(table.table_url(), e))?
        .with_target_file_size(TARGET_FILE_SIZE)
        .with_writer_properties(writer_properties(unique_columns)))
}

/// Streams batches into one table and commits them atomically with `txn` actions.
pub(crate) struct TableWriter {
    pub(crate) table: DeltaTable,
    writer: RecordBatchWriter,
    unique_columns: Vec<String>,
    /// Rows written since the last commit.
    pub(crate) rows: u64,
    merge_schema: bool,
}

impl TableWriter {
    /// A writer for `table`; `unique_columns` (such as uuids) get no dictionary.
    pub(crate) fn new(table: DeltaTable, unique_columns: &[String]) -> Result<Self> {
        let writer = batch_writer(&table, unique_columns)?;
        Ok(Self {
            table,
            writer,
            unique_columns: unique_columns.to_vec(),
            rows: 0,
            merge_schema: false,
        })
    }

    /// Allows new columns to widen the table schema.
    pub(crate) fn allow_new_columns(&mut self) {
        self.merge_schema = true;
    }

    pub(crate) async fn write(&mut self, batch: arrow::array::RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        let mode = if self.merge_schema {
            WriteMode::MergeSchema
        } else {
            WriteMode::Default
        };
        self.writer
            .write_with_mode(batch, mode)
            .await
            .map_err(|e| Error::delta(self.table.table_url(), e))
    }

    /// Commits everything written, with one `txn` per source and `info` as commit
    /// metadata. If a concurrent commit changed the table's metadata (two first
    /// ingests racing to create the table), the staged files are committed again
    /// on the new version, once it is clear that the schema is the same and that
    /// none of the sources landed meanwhile.
    /// The writer can be used again after a commit.
    pub(crate) async fn commit(
        &mut self,
        txns: Vec<Transaction>,
        info: serde_json::Map<String, serde_json::Value>,
    ) -> Result<i64> {
        let url = self.table.table_url().clone();
        let props = CommitProperties::default()
            .with_application_transactions(txns.clone())
            .with_metadata(info);
        let fresh = batch_writer(&self.table, &self.unique_columns)?;
        let mut writer = std::mem::replace(&mut self.writer, fresh).with_commit_properties(props);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let schema_before = table_schema(&self.table, &url)?;
            match writer.flush_and_commit(&mut self.table).await {
                Ok(version) => {
                    // The next batch starts from the committed schema.
                    self.writer = batch_writer(&self.table, &self.unique_columns)?;
                    self.rows = 0;
                    return Ok(version as i64);
                }
                Err(DeltaTableError::Transaction {
                    source: TransactionError::CommitConflict(CommitConflictError::MetadataChanged),
                }) if attempts < 3 => {
                    self.table.load().await.map_err(|e| Error::delta(&url, e))?;
                    if table_schema(&self.table, &url)? != schema_before {
                        return Err(Error::Invalid(format!(
                            "the schema of {url} changed while this ingest ran; run it again"
                        )));
                    }
                    for t in &txns {
                        if committed_version(&self.table, &t.app_id).await? >= Some(t.version) {
                            return Err(Error::Invalid(format!(
                                "a concurrent ingest committed the same input to {url}"
                            )));
                        }
                    }
                }
                Err(e) => return Err(Error::delta(&url, e)),
            }
        }
    }

    /// Discards everything written since the last commit (uploads in flight
    /// are aborted; finished files stay unreferenced until a vacuum).
    pub(crate) fn abort(&mut self) {
        self.writer.reset();
        self.rows = 0;
    }

    /// Drops anything staged and loads the table's latest version.
    pub(crate) async fn reload(&mut self) -> Result<()> {
        self.abort();
        self.refresh().await?;
        self.writer = batch_writer(&self.table, &self.unique_columns)?;
        Ok(())
    }

    /// Reads the commits made since the table was loaded, keeping what is staged.
    pub(crate) async fn refresh(&mut self) -> Result<()> {
        self.table
            .update_incremental(None)
            .await
            .map_err(|e| Error::delta(self.table.table_url(), e))
    }
}
