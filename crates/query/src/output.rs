//! Writing query results: an aligned table for people, CSV (with a header
//! line), JSON lines, Parquet or Arrow IPC (stream format) for programs.
//! Every format but `table` streams batch by batch, so large results never sit
//! in memory whole.

use std::io::Write;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

use crate::error::{Error, Result};

/// How results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// An aligned text table (collects the result first).
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per line.
    Json,
    /// A Parquet file.
    Parquet,
    /// Arrow IPC, stream format.
    Arrow,
}

impl std::str::FromStr for OutputFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "table" => OutputFormat::Table,
            "csv" => OutputFormat::Csv,
            "json" | "jsonl" | "ndjson" => OutputFormat::Json,
            "parquet" => OutputFormat::Parquet,
            "arrow" | "ipc" => OutputFormat::Arrow,
            other => {
                return Err(Error::Invalid(format!(
                    "unknown output format `{other}` (expected table, csv, json, parquet or arrow)"
                )));
            }
        })
    }
}

/// `batches` as an aligned text table.
pub fn pretty(batches: &[RecordBatch]) -> Result<String> {
    Ok(pretty_format_batches(batches).map_err(out_err)?.to_string())
}

fn out_err(e: impl std::fmt::Display) -> Error {
    Error::Output(e.to_string())
}

/// Writes every batch of `stream` to `out` as `format`; returns the rows written.
pub async fn write_stream(
    mut stream: SendableRecordBatchStream,
    format: OutputFormat,
    out: Box<dyn Write + Send>,
) -> Result<u64> {
    let schema = stream.schema();
    let mut sink = Sink::new(format, schema, out)?;
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        sink.write(batch)?;
    }
    sink.finish()?;
    Ok(rows)
}

enum Sink {
    Table(Vec<RecordBatch>, Box<dyn Write + Send>),
    Csv(Box<datafusion::arrow::csv::Writer<Box<dyn Write + Send>>>),
    Json(datafusion::arrow::json::LineDelimitedWriter<Box<dyn Write + Send>>),
    Parquet(Box<parquet::arrow::ArrowWriter<Box<dyn Write + Send>>>),
    Arrow(datafusion::arrow::ipc::writer::StreamWriter<Box<dyn Write + Send>>),
}

impl Sink {
    fn new(format: OutputFormat, schema: SchemaRef, out: Box<dyn Write + Send>) -> Result<Self> {
        Ok(match format {
            OutputFormat::Table => Sink::Table(Vec::new(), out),
            OutputFormat::Csv => Sink::Csv(Box::new(
                datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(out),
            )),
            OutputFormat::Json => {
                Sink::Json(datafusion::arrow::json::LineDelimitedWriter::new(out))
            }
            OutputFormat::Parquet => Sink::Parquet(Box::new(
                parquet::arrow::ArrowWriter::try_new(out, schema, None).map_err(out_err)?,
            )),
            OutputFormat::Arrow => Sink::Arrow(
                datafusion::arrow::ipc::writer::StreamWriter::try_new(out, &schema)
                    .map_err(out_err)?,
            ),
        })
    }

    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        match self {
            Sink::Table(held, _) => held.push(batch),
            Sink::Csv(w) => w.write(&batch).map_err(out_err)?,
            Sink::Json(w) => w.write(&batch).map_err(out_err)?,
            Sink::Parquet(w) => w.write(&batch).map_err(out_err)?,
            Sink::Arrow(w) => w.write(&batch).map_err(out_err)?,
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        match self {
            Sink::Table(held, mut out) => {
                writeln!(out, "{}", pretty(&held)?).map_err(out_err)?;
                out.flush().map_err(out_err)?;
            }
            Sink::Csv(w) => w.into_inner().flush().map_err(out_err)?,
            Sink::Json(mut w) => {
                w.finish().map_err(out_err)?;
                w.into_inner().flush().map_err(out_err)?;
            }
            Sink::Parquet(w) => {
                w.into_inner().map_err(out_err)?.flush().map_err(out_err)?;
            }
            Sink::Arrow(mut w) => {
                w.finish().map_err(out_err)?;
                w.into_inner().map_err(out_err)?.flush().map_err(out_err)?;
            }
        }
        Ok(())
    }
}
