//! DataIngestionPipeline for files: resolve inputs, skip files already landed,
//! read and validate each file on a blocking thread, stream valid rows into the
//! raw table and rejects into the quarantine table, then commit both with the
//! files' identities. Any error before the commits leaves both tables untouched.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use deltalake::kernel::Transaction;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
// Deprecated in parquet 59 in favour of a hand-written AsyncFileReader; it is
// still the maintained object_store bridge that delta-rs itself uses.
#[allow(deprecated)]
use parquet::arrow::async_reader::ParquetObjectReader;
use serde_json::json;
use tarn_common::config::CsvOptions;
use tarn_common::storage::object_store_for;
use tarn_common::{DatasetSchema, Zone, ZoneRoots};
use tarn_governance::{
    DatasetRecord, IngestionRun, LineageFact, LineageTable, MetadataStore, RunStatus,
};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::landing::Landing;
use crate::raw_zone::{committed_version, file_app_id, load_table};
use crate::reader::{Chunk, Payloads, Sink, avro, csv, json as json_reader};
use crate::result::{IngestionMetadata, IngestionResult, IngestionStatus};
use crate::source::{InputFile, resolve_inputs};
use crate::spec::{DataSpec, Format};
use crate::validator::{DataValidator, Validated};

/// Reports progress of long ingests (the CLI draws a bar with it).
pub trait Progress: Send + Sync {
    /// Work of `total_bytes` is about to start.
    fn start(&self, total_bytes: u64);
    /// `n` more bytes were read.
    fn advance(&self, n: u64);
    /// Work is done.
    fn finish(&self);
}

/// What an ingest needs from the lake.
#[derive(Clone)]
pub struct IngestContext {
    /// Zone roots and object-store options.
    pub roots: ZoneRoots,
    /// The catalog.
    pub metadata: Arc<dyn MetadataStore>,
    /// Records per batch.
    pub batch_size: usize,
    /// Dataset owner, description and tags to register.
    pub owner: Option<String>,
    /// See `owner`.
    pub description: Option<String>,
    /// See `owner`.
    pub tags: Vec<String>,
    /// Progress reporting.
    pub progress: Option<Arc<dyn Progress>>,
}

/// One file to ingest and what is already committed of it.
struct Planned {
    file: InputFile,
    format: Format,
    app_id: String,
    content_hash: String,
    raw_version: Option<i64>,
    quarantine_version: Option<i64>,
}

/// Ingests the files of `spec` into the raw zone. The run is recorded in the
/// catalog, failed or not.
pub async fn ingest_files(ctx: &IngestContext, spec: &DataSpec) -> Result<IngestionResult> {
    spec.check()?;
    if spec.paths.is_empty() {
        return Err(Error::Invalid(format!(
            "no input given for dataset `{}` (pass --path or set datasets.{}.source)",
            spec.dataset, spec.dataset
        )));
    }
    let source = format!("file:{}", spec.paths.join(","));
    recorded(ctx, &spec.dataset, source, |run_id| {
        ingest(ctx, spec, run_id)
    })
    .await
}

/// Runs `work` as an ingestion run of `dataset` from `source`, recorded in the
/// catalog (started, then finished or failed) with its lineage: the inputs
/// listed in the result's `files` feed `raw/<dataset>`.
pub(crate) async fn recorded<F, Fut>(
    ctx: &IngestContext,
    dataset: &str,
    source: String,
    work: F,
) -> Result<IngestionResult>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<IngestionResult>>,
{
    let started = Instant::now();
    let id = uuid::Uuid::now_v7().to_string();
    let mut run = IngestionRun {
        id: id.clone(),
        dataset: dataset.to_string(),
        source,
        status: RunStatus::Running,
        started_at: Utc::now(),
        ended_at: None,
        rows_read: 0,
        rows_written: 0,
        rows_quarantined: 0,
        bytes_read: 0,
        delta_version: None,
        error: None,
    };
    ctx.metadata.start_run(&run).await?;
    let outcome = work(id).await;
    if let Some(p) = &ctx.progress {
        p.finish();
    }
    run.ended_at = Some(Utc::now());
    match outcome {
        Ok(mut result) => {
            let m = &mut result.metadata;
            m.duration_secs = started.elapsed().as_secs_f64();
            run.status = match result.status {
                IngestionStatus::Success => RunStatus::Success,
                IngestionStatus::Partial => RunStatus::Partial,
                IngestionStatus::Skipped => RunStatus::Skipped,
            };
            run.rows_read = m.rows_read as i64;
            run.rows_written = m.rows_written as i64;
            run.rows_quarantined = m.rows_quarantined as i64;
            run.bytes_read = m.bytes_read as i64;
            run.delta_version = m.delta_version;
            ctx.metadata.finish_run(&run).await?;
            if result.status != IngestionStatus::Skipped {
                ctx.metadata
                    .record_lineage(&LineageFact {
                        run_id: run.id.clone(),
                        job: format!("ingest:{dataset}"),
                        inputs: m
                            .files
                            .iter()
                            .map(|f| LineageTable {
                                table: f.clone(),
                                version: None,
                            })
                            .collect(),
                        outputs: vec![LineageTable {
                            table: format!("raw/{dataset}"),
                            version: m.delta_version,
                        }],
                        columns: Vec::new(),
                        recorded_at: Utc::now(),
                    })
                    .await?;
            }
            Ok(result)
        }
        Err(e) => {
            run.status = RunStatus::Failed;
            run.error = Some(e.to_string());
            ctx.metadata.finish_run(&run).await?;
            Err(e)
        }
    }
}

async fn ingest(ctx: &IngestContext, spec: &DataSpec, run_id: String) -> Result<IngestionResult> {
    let run_id = run_id.as_str();
    let options = &ctx.roots.options;
    let raw_url = ctx.roots.table_url(Zone::Raw, &spec.dataset);
    let q_url = ctx.roots.quarantine_url(&spec.dataset);
    let files = resolve_inputs(&spec.paths, options).await?;

    let existing_raw = load_table(&raw_url, options).await?;
    let existing_q = load_table(&q_url, options).await?;
    let mut planned = Vec::new();
    let mut skipped = Vec::new();
    for file in files {
        let format = match spec.format {
            Some(f) => f,
            None => Format::from_path(file.path.as_ref()).ok_or_else(|| {
                Error::input(
                    file.display(),
                    "cannot tell the format from the extension; pass --format",
                )
            })?,
        };
        let content_hash = file.content_hash().await?;
        let app_id = file_app_id(file.url.as_str(), file.size, &content_hash);
        let raw_version = match &existing_raw {
            Some(t) => committed_version(t, &app_id).await?,
            None => None,
        };
        let quarantine_version = match &existing_q {
            Some(t) => committed_version(t, &app_id).await?,
            None => None,
        };
        if raw_version.is_some() && !spec.force {
            skipped.push(file.display());
            continue;
        }
        planned.push(Planned {
            file,
            format,
            app_id,
            content_hash,
            raw_version,
            quarantine_version,
        });
    }

    let mut meta = IngestionMetadata {
        run_id: run_id.to_string(),
        dataset: spec.dataset.clone(),
        quarantine_location: q_url.to_string(),
        files_skipped: skipped.len(),
        skipped,
        ..Default::default()
    };
    if planned.is_empty() {
        return Ok(IngestionResult {
            status: IngestionStatus::Skipped,
            location: raw_url.to_string(),
            metadata: meta,
            errors: Vec::new(),
        });
    }
    let (schema, schema_version) = dataset_schema(ctx, spec, &planned[0]).await?;
    meta.schema_version = schema_version;

    let (mut landing, validator) = Landing::open(ctx, spec, schema, run_id).await?;
    let mut validator = Some(validator);
    if let Some(p) = &ctx.progress {
        p.start(planned.iter().map(|p| p.file.size).sum());
    }
    let mut result = Ok(());
    for plan in &planned {
        let mut v = validator.take().expect("returned by the previous file");
        v.set_source(&plan.file.display());
        match ingest_one(ctx, plan, &spec.csv, v, &mut landing).await {
            Ok(v) => {
                meta.bytes_read += plan.file.size;
                validator = Some(v);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if let Err(e) = result {
        landing.abort();
        return Err(e);
    }

    let txns = |versions: &dyn Fn(&Planned) -> Option<i64>| -> Vec<Transaction> {
        planned
            .iter()
            .map(|p| Transaction::new(&p.app_id, versions(p).map_or(0, |v| v + 1)))
            .collect()
    };
    let (q_version, raw_version) = landing
        .commit(
            txns(&|p| p.raw_version),
            txns(&|p| p.quarantine_version),
            commit_info(run_id, &planned),
        )
        .await?;
    meta.quarantine_version = q_version;
    meta.delta_version = Some(raw_version);
    meta.rows_read = landing.counts.read;
    meta.rows_written = landing.counts.written;
    meta.rows_quarantined = landing.counts.quarantined;
    meta.files_ingested = planned.len();
    meta.files = planned.iter().map(|p| p.file.url.to_string()).collect();

    let validator = validator.expect("returned by the last file");
    if !validator.added_fields().is_empty() {
        let v = ctx
            .metadata
            .pin_schema(&spec.dataset, &validator.schema().to_avsc())
            .await?;
        meta.schema_version = v.version;
    }
    register_dataset(ctx, &spec.dataset, &raw_url).await?;

    Ok(IngestionResult {
        status: IngestionStatus::of(&meta),
        location: raw_url.to_string(),
        errors: landing.errors(),
        metadata: meta,
    })
}

/// Reads, validates and writes one file; returns the validator for the next.
async fn ingest_one(
    ctx: &IngestContext,
    plan: &Planned,
    csv_opts: &CsvOptions,
    mut validator: DataValidator,
    landing: &mut Landing,
) -> Result<DataValidator> {
    let display = plan.file.display();
    let (tx, mut rx) = mpsc::channel::<Validated>(4);
    let file = plan.file.clone();
    let format = plan.format;
    let csv_opts = csv_opts.clone();
    let batch_size = ctx.batch_size;
    let progress = ctx.progress.clone();
    let handle = tokio::runtime::Handle::current();
    let names: Vec<String> = validator
        .schema()
        .fields
        .iter()
        .map(|f| f.name.clone())
        .collect();
    // Three stages, so both cores stay busy: parse (reader thread) → validate
    // (validator thread) → encode and upload (this task).
    let (chunk_tx, chunk_rx) = std::sync::mpsc::sync_channel::<Chunk>(4);
    let reader = tokio::task::spawn_blocking(move || {
        let mut sink = |chunk: Chunk| -> Result<()> {
            chunk_tx
                .send(chunk)
                .map_err(|_| Error::Internal("ingest validator stopped".into()))
        };
        let on_bytes = |n: u64| {
            if let Some(p) = &progress {
                p.advance(n);
            }
        };
        read_file(
            &file, format, &csv_opts, &names, batch_size, &handle, &mut sink, &on_bytes,
        )?;
        if format == Format::Parquet {
            on_bytes(file.size);
        }
        Ok::<_, Error>(())
    });
    let checker = tokio::task::spawn_blocking(move || {
        for chunk in chunk_rx {
            let v = validator.validate(chunk)?;
            tx.blocking_send(v)
                .map_err(|_| Error::Internal("ingest writer stopped".into()))?;
        }
        Ok::<_, Error>(validator)
    });

    // A run that died between its two commits quarantined this file already.
    let quarantine = plan.quarantine_version.is_none() || plan.raw_version.is_some();
    let mut write_result = Ok(());
    while let Some(v) = rx.recv().await {
        if let Err(e) = landing.land(v, &display, quarantine).await {
            write_result = Err(e);
            break;
        }
    }
    drop(rx);
    let join =
        |what: &str, e: tokio::task::JoinError| Error::Internal(format!("{what} thread: {e}"));
    let validated = checker.await.map_err(|e| join("validator", e))?;
    let read = reader.await.map_err(|e| join("reader", e))?;
    // The first stage to fail names the cause; the ones before it only saw it stop.
    write_result?;
    let validator = validated?;
    read?;
    Ok(validator)
}

/// Runs the reader for `format` over `file`, on the current (blocking) thread.
/// `names` are the schema's fields, for headerless CSV.
#[allow(clippy::too_many_arguments)]
fn read_file(
    file: &InputFile,
    format: Format,
    csv_opts: &CsvOptions,
    names: &[String],
    batch_size: usize,
    handle: &tokio::runtime::Handle,
    sink: &mut Sink<'_>,
    progress: &dyn Fn(u64),
) -> Result<()> {
    let display = file.display();
    if format == Format::Parquet {
        return read_parquet(file, batch_size, handle, sink);
    }
    let input = std::io::BufReader::with_capacity(1 << 20, file.blocking_reader(handle)?);
    match format {
        Format::Csv => csv::read(input, csv_opts, names, batch_size, &display, sink, progress),
        Format::Ndjson | Format::Json => {
            json_reader::read(input, batch_size, &display, sink, progress)
        }
        Format::Avro => avro::read(input, batch_size, &display, sink),
        Format::Parquet => unreachable!("handled above"),
    }
}

/// Reads Parquet through the object store; each batch is fetched on the
/// runtime and handed to `sink` on this (blocking) thread.
#[allow(deprecated)]
fn read_parquet(
    file: &InputFile,
    batch_size: usize,
    handle: &tokio::runtime::Handle,
    sink: &mut Sink<'_>,
) -> Result<()> {
    let display = file.display();
    let reader =
        ParquetObjectReader::new(file.store.clone(), file.path.clone()).with_file_size(file.size);
    let mut stream = handle
        .block_on(ParquetRecordBatchStreamBuilder::new(reader))
        .map_err(|e| Error::input(&display, format!("not a Parquet file: {e}")))?
        .with_batch_size(batch_size)
        .build()
        .map_err(|e| Error::input(&display, e))?;
    let mut next_row = 1u64;
    while let Some(batch) = handle.block_on(stream.next()) {
        let batch = batch.map_err(|e| Error::input(&display, e))?;
        let n = batch.num_rows() as u64;
        sink(Chunk {
            batch,
            positions: (next_row..next_row + n).collect(),
            payloads: Payloads::Rows,
            rejects: Vec::new(),
        })?;
        next_row += n;
    }
    Ok(())
}

/// The schema to validate against and its pinned version: the given `.avsc`
/// (pinned if new), else the pinned schema, else one inferred from `first`.
async fn dataset_schema(
    ctx: &IngestContext,
    spec: &DataSpec,
    first: &Planned,
) -> Result<(DatasetSchema, i64)> {
    if let Some(found) = given_or_pinned_schema(ctx, spec).await? {
        return Ok(found);
    }
    let chunk = peek_first_chunk(ctx, first, &spec.csv).await?;
    pin_inferred_schema(ctx, &spec.dataset, &chunk).await
}

/// The schema of `spec.schema` (pinned if new), else the dataset's pinned
/// schema, with its version; `None` for a new dataset without a schema.
pub(crate) async fn given_or_pinned_schema(
    ctx: &IngestContext,
    spec: &DataSpec,
) -> Result<Option<(DatasetSchema, i64)>> {
    let store = &ctx.metadata;
    if let Some(location) = &spec.schema {
        let text = read_text(location, &ctx.roots.options).await?;
        let schema = DatasetSchema::from_avsc(&text).map_err(|e| match e {
            tarn_common::Error::Schema(m) => Error::input(location, m),
            other => other.into(),
        })?;
        let v = store.pin_schema(&spec.dataset, &schema.to_avsc()).await?;
        return Ok(Some((schema, v.version)));
    }
    match store.latest_schema(&spec.dataset).await? {
        Some(v) => Ok(Some((DatasetSchema::from_avsc(&v.schema_avsc)?, v.version))),
        None => Ok(None),
    }
}

/// Infers a schema from a dataset's first chunk and pins it.
pub(crate) async fn pin_inferred_schema(
    ctx: &IngestContext,
    dataset: &str,
    chunk: &Chunk,
) -> Result<(DatasetSchema, i64)> {
    let schema = DataValidator::infer_schema(dataset, chunk)?;
    let v = ctx.metadata.pin_schema(dataset, &schema.to_avsc()).await?;
    Ok((schema, v.version))
}

/// Reads just the first chunk of a file, to infer a schema from it.
async fn peek_first_chunk(
    ctx: &IngestContext,
    plan: &Planned,
    csv_opts: &CsvOptions,
) -> Result<Chunk> {
    let file = plan.file.clone();
    let csv_opts = csv_opts.clone();
    let format = plan.format;
    let batch_size = ctx.batch_size;
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut first = None;
        let mut sink = |chunk: Chunk| -> Result<()> {
            first = Some(chunk);
            Err(Error::Internal("peeked".into()))
        };
        let res = read_file(
            &file,
            format,
            &csv_opts,
            &[],
            batch_size,
            &handle,
            &mut sink,
            &|_| {},
        );
        match (first, res) {
            (Some(c), _) => Ok(c),
            (None, Err(e)) => Err(e),
            (None, Ok(())) => Err(Error::input(
                file.display(),
                "the file holds no records to infer a schema from; pass --schema",
            )),
        }
    })
    .await
    .map_err(|e| Error::Internal(format!("reader thread: {e}")))?
}

/// Reads a small text file (such as an `.avsc`) from a path or URL.
async fn read_text(location: &str, options: &HashMap<String, String>) -> Result<String> {
    let url = if location.contains("://") {
        url::Url::parse(location).map_err(|e| Error::input(location, e))?
    } else {
        let abs = std::path::absolute(location).map_err(|e| Error::input(location, e))?;
        url::Url::from_file_path(abs).map_err(|_| Error::input(location, "invalid path"))?
    };
    let (store, path) = object_store_for(&url, options)?;
    let bytes = store
        .get(&path)
        .await
        .map_err(|e| match e {
            object_store::Error::NotFound { .. } => Error::input(location, "no such file"),
            other => Error::input(location, other),
        })?
        .bytes()
        .await
        .map_err(|e| Error::input(location, e))?;
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::input(location, "not UTF-8 text"))
}

fn commit_info(run_id: &str, planned: &[Planned]) -> serde_json::Map<String, serde_json::Value> {
    let files: Vec<serde_json::Value> = planned
        .iter()
        .map(|p| {
            json!({
                "url": p.file.url.as_str(),
                "size": p.file.size,
                "blake3": p.content_hash,
                "txn": p.app_id,
            })
        })
        .collect();
    let mut m = serde_json::Map::new();
    m.insert("tarn.run_id".into(), json!(run_id));
    m.insert("tarn.files".into(), json!(files));
    m
}

pub(crate) async fn register_dataset(
    ctx: &IngestContext,
    name: &str,
    url: &url::Url,
) -> Result<()> {
    let now = Utc::now();
    let existing = ctx.metadata.dataset(name, Zone::Raw).await?;
    ctx.metadata
        .upsert_dataset(&DatasetRecord {
            name: name.to_string(),
            zone: Zone::Raw,
            location: url.to_string(),
            owner: ctx.owner.clone(),
            description: ctx.description.clone(),
            tags: if ctx.tags.is_empty() {
                existing
                    .as_ref()
                    .map(|d| d.tags.clone())
                    .unwrap_or_default()
            } else {
                ctx.tags.clone()
            },
            created_at: existing.map_or(now, |d| d.created_at),
            updated_at: now,
        })
        .await?;
    Ok(())
}
