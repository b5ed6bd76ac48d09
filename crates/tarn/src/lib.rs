//! # tarn
//!
//! An enterprise data lake in one library and binary. [`DataLake`] is the entry
//! point; this crate is a facade over the domain crates:
//!
//! ```text
//! tarn-common      config (tarn.yaml), dataset schemas, zone locations
//!   └─ tarn-governance   MetadataStore: catalog, schema versions, runs (SQLite/PostgreSQL)
//!        ├─ tarn-ingest  DataIngestionPipeline: connectors → DataValidator → raw zone + quarantine
//!        ├─ tarn-zones   ZoneManager: cleanse → curate → consume stages, quality, policies
//!        └─ tarn-query   QueryEngine: DataFusion over the zones, structured queries, cache, cost
//!             └─ tarn    DataLake: open, ingest_data, process_data, query_data, catalog (this crate)
//!                  └─ tarn-cli   the `tarn` binary
//! ```
//!
//! A file goes in through [`DataLake::ingest_data`]; every record is validated
//! against the dataset's schema; valid rows land in the raw zone's Delta table
//! at `<raw root>/<dataset>`, invalid ones in `<raw root>/_quarantine/<dataset>`
//! with a reason, and the run's reconciled counts go to the catalog.
//!
//! [`DataLake::process_data`] then promotes what is new in raw through the
//! cleansed, curated and consumption zones, as the dataset's `cleanse`,
//! `curate` and `consume` sections in `tarn.yaml` declare.
//!
//! ```no_run
//! # async fn f() -> tarn::Result<()> {
//! use tarn::{DataLake, DataSpec, TarnConfig};
//! let lake = DataLake::open(TarnConfig::discover(None)?).await?;
//! let spec = DataSpec::new("user_events", "incoming/*.csv")
//!     .with_schema("user_events.avsc")
//!     .with_partition_key("timestamp");
//! let result = lake.ingest_data("file", spec).await?;
//! println!("{} rows landed at {}", result.metadata.rows_written, result.location);
//!
//! use tarn::{Predicate, Query};
//! let query = Query::from("raw/user_events")
//!     .select(["user_id", "event_type"])
//!     .filter("event_type", Predicate::Eq("purchase".into()));
//! let batches = lake.query_data(&query).await?.collect().await?;
//!
//! let processed = lake.process_data("raw/user_events").await?;
//! for stage in &processed.stages {
//!     println!("{}: {} in, {} out", stage.stage, stage.rows_in, stage.rows_out);
//! }
//! # Ok(()) }
//! ```

mod access;
mod catalog;
mod compliance;
pub mod demo;
mod erase;
mod error;
mod lake;
mod lineage;

pub use access::{CreatedToken, GrantTarget, parse_mask, parse_table};
pub use catalog::{CatalogEntry, DatasetDetails, TableStats, ZoneTable};
pub use compliance::ClassifiedColumn;
pub use erase::EraseScope;
pub use error::{Error, Result};
pub use lake::DataLake;
pub use tarn_common::config::{
    CsvOptions, DatabaseSourceConfig, KafkaSourceConfig, RestSourceConfig, SchemaEvolution,
    SourceConfig,
};
pub use tarn_common::{DatasetSchema, TarnConfig, Zone};
pub use tarn_governance as governance;
pub use tarn_governance::{IngestionRun, LineageFact, QualityResult, RunStatus, SchemaVersion};
pub use tarn_ingest::{
    DataSpec, Format, IngestionMetadata, IngestionResult, IngestionStatus, Progress,
};
/// Query engine internals: catalog, cache, cost, statistics, output.
pub use tarn_query as query;
pub use tarn_query::{
    CacheStats, CacheStatus, Condition, Explanation, OutputFormat, PartitionDate, Predicate,
    Principal, Query, QueryEngine, QueryStream,
};
/// Zone pipelines: stages, quality, enrichment, partitioning, policies.
pub use tarn_zones as zones;
pub use tarn_zones::{ProcessOptions, ProcessingResult, StageResult, StageStatus};
