//! DataSpec: what to ingest, into which dataset, against which schema.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};
use tarn_common::config::{CsvOptions, SchemaEvolution, SourceConfig};

use crate::error::{Error, Result};

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma (or other delimiter) separated values.
    Csv,
    /// One JSON object per line.
    Ndjson,
    /// A JSON array of objects (or NDJSON in a `.json` file).
    Json,
    /// Apache Parquet.
    Parquet,
    /// Avro object container file.
    Avro,
}

impl Format {
    /// The format a file name's extension implies.
    pub fn from_path(path: &str) -> Option<Self> {
        let ext = path.rsplit('.').next()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "csv" | "tsv" | "txt" => Format::Csv,
            "ndjson" | "jsonl" => Format::Ndjson,
            "json" => Format::Json,
            "parquet" | "pq" => Format::Parquet,
            "avro" => Format::Avro,
            _ => return None,
        })
    }
}

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "csv" => Format::Csv,
            "ndjson" | "jsonl" => Format::Ndjson,
            "json" => Format::Json,
            "parquet" => Format::Parquet,
            "avro" => Format::Avro,
            other => {
                return Err(Error::Invalid(format!(
                    "unknown format `{other}` (expected csv, ndjson, json, parquet or avro)"
                )));
            }
        })
    }
}

/// What to ingest: the seed's DataSpec.
#[derive(Debug, Clone, Default)]
pub struct DataSpec {
    /// Target dataset name.
    pub dataset: String,
    /// Files, directories or globs (local paths or object-store URLs), for the
    /// file connector.
    pub paths: Vec<String>,
    /// The source for the other connectors (Kafka, REST, database).
    pub source: Option<SourceConfig>,
    /// Input format; inferred from each file's extension when `None`.
    pub format: Option<Format>,
    /// CSV dialect.
    pub csv: CsvOptions,
    /// Location of an Avro `.avsc`; `None` uses the pinned schema, or infers and pins one.
    pub schema: Option<String>,
    /// Timestamp column whose date partitions the raw table.
    pub partition_key: Option<String>,
    /// What to do with new columns.
    pub schema_evolution: SchemaEvolution,
    /// Ingest files again even if they were ingested before.
    pub force: bool,
    /// Kafka: keep consuming until `stop` is set, instead of stopping at the
    /// end offsets seen at start.
    pub follow: bool,
    /// Set to stop a Kafka ingest: it commits what it holds and returns.
    pub stop: Option<Arc<AtomicBool>>,
}

impl DataSpec {
    /// A spec for `dataset` reading `path`.
    pub fn new(dataset: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            dataset: dataset.into(),
            paths: vec![path.into()],
            ..Default::default()
        }
    }

    /// Sets the schema location.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Sets the partition key.
    pub fn with_partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// Sets the connector source (Kafka, REST or database).
    pub fn with_source(mut self, source: SourceConfig) -> Self {
        self.source = Some(source);
        self
    }

    /// Sets the format.
    pub fn with_format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }

    /// Sets the schema evolution mode.
    pub fn with_schema_evolution(mut self, mode: SchemaEvolution) -> Self {
        self.schema_evolution = mode;
        self
    }

    /// Re-ingests files that were ingested before.
    pub fn with_force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    pub(crate) fn check(&self) -> Result<()> {
        let ok = !self.dataset.is_empty()
            && self
                .dataset
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            return Err(Error::Invalid(format!(
                "invalid dataset name `{}`: use letters, digits, `_` and `-`",
                self.dataset
            )));
        }
        if self.dataset.starts_with('_') {
            return Err(Error::Invalid(format!(
                "dataset names starting with `_` are reserved: `{}`",
                self.dataset
            )));
        }
        Ok(())
    }
}
