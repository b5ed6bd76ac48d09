//! tarn's DataIngestionPipeline: read a source as Arrow batches, validate every
//! record against the dataset schema, land valid rows in the raw zone's Delta
//! table and quarantine the rest with a reason.
//!
//! ```text
//! files (csv/json/parquet/avro) ─┐
//! Kafka (kafka.rs)               ├─► DataValidator ─► Landing ─► raw table
//! REST, databases (pull.rs)      ┘                        └────► quarantine table
//! ```
//! Every source commits its position with its rows (a Delta `txn` action): a
//! file's identity, a Kafka partition's next offset, a REST or database
//! cursor. So each record lands exactly once, across crashes and restarts.
//! Depends on `tarn-common` and `tarn-governance`.

mod connector;
mod error;
mod kafka;
mod landing;
mod pipeline;
mod pull;
mod quarantine;
mod raw_zone;
pub mod reader;
mod result;
mod source;
mod spec;
mod validator;

pub use error::{Error, Result};
pub use kafka::ingest_kafka;
pub use pipeline::{IngestContext, Progress, ingest_files};
pub use pull::ingest_pull;
pub use quarantine::quarantine_schema;
pub use raw_zone::load_table;
pub use result::{IngestionMetadata, IngestionResult, IngestionStatus};
pub use source::{InputFile, resolve_inputs};
pub use spec::{DataSpec, Format};
pub use validator::DataValidator;

/// Columns tarn adds to every raw table.
pub mod columns {
    /// The ingestion run that wrote the row.
    pub const RUN_ID: &str = "_ingest_run_id";
    /// The source file and line (or record number) of the row.
    pub const SOURCE: &str = "_ingest_source";
    /// When the row was ingested.
    pub const INGESTED_AT: &str = "_ingested_at";
    /// The date of the partition key, the raw table's partition column.
    pub const PARTITION_DATE: &str = "_partition_date";
}
