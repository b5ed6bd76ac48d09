//! DataIngestionPipeline for the pull connectors (REST APIs and databases):
//! read the records above the committed cursor, validate them, land valid rows
//! in raw and rejects in quarantine, and commit the new cursor with them.
//!
//! The highest cursor value landed is the version of the source's `txn` action,
//! in the same Delta commit as the rows. The quarantine table is committed
//! first, with the same `txn`. If a run dies between the two commits, the next
//! run re-reads the records up to the quarantine's cursor without quarantining
//! their rejects again, then carries on above it: nothing is lost or landed twice.

use deltalake::kernel::Transaction;
use serde_json::json;
use tarn_common::config::SourceConfig;
use tarn_common::{DatasetSchema, Zone};
use tokio::sync::mpsc;

use crate::connector::{CursorRange, ReadStats, database, rest};
use crate::error::{Error, Result};
use crate::landing::Landing;
use crate::pipeline::{
    IngestContext, given_or_pinned_schema, pin_inferred_schema, recorded, register_dataset,
};
use crate::raw_zone::{committed_version, load_table};
use crate::reader::Chunk;
use crate::result::{IngestionMetadata, IngestionResult, IngestionStatus};
use crate::spec::DataSpec;
use crate::validator::DataValidator;

/// Ingests `spec.source` (a REST or database source) into the raw zone. The
/// run is recorded in the catalog, failed or not.
pub async fn ingest_pull(ctx: &IngestContext, spec: &DataSpec) -> Result<IngestionResult> {
    spec.check()?;
    let source = Source::new(spec)?;
    let label = source.label();
    recorded(ctx, &spec.dataset, label, |run_id| {
        ingest(ctx, spec, source, run_id)
    })
    .await
}

/// A pull source and its identity in `txn` actions.
enum Source<'a> {
    Rest(&'a tarn_common::config::RestSourceConfig),
    Database(&'a tarn_common::config::DatabaseSourceConfig),
}

impl<'a> Source<'a> {
    fn new(spec: &'a DataSpec) -> Result<Self> {
        match &spec.source {
            Some(SourceConfig::Rest(r)) => {
                rest::check(r)?;
                Ok(Source::Rest(r))
            }
            Some(SourceConfig::Database(d)) => Ok(Source::Database(d)),
            _ => Err(Error::Invalid(format!(
                "dataset `{}` has no REST or database source",
                spec.dataset
            ))),
        }
    }

    fn label(&self) -> String {
        match self {
            Source::Rest(r) => format!("rest:{}", rest::label(r)),
            Source::Database(d) => format!("database:{}", database::label(d)),
        }
    }

    /// The column or field whose highest value is committed, if any.
    fn cursor_field(&self) -> Option<&str> {
        match self {
            Source::Rest(r) => r.cursor_field.as_deref(),
            Source::Database(d) => d.watermark.as_deref(),
        }
    }

    /// The `txn` app id of this source: what it reads and its cursor. A REST
    /// cursor of timestamps gets its own id, so the next run knows how to send it.
    fn app_id(&self, timestamps: bool) -> String {
        let what = match self {
            Source::Rest(r) => format!("rest\n{}\n{:?}", rest::label(r), r.records_path),
            Source::Database(d) => format!(
                "database\n{}\n{:?}\n{:?}",
                database::label(d),
                d.table,
                d.query
            ),
        };
        let id = blake3::hash(format!("{what}\n{:?}", self.cursor_field()).as_bytes()).to_hex();
        let kind = if timestamps { "-ts" } else { "" };
        format!("tarn-{}-{}{kind}", self.kind(), &id[..24])
    }

    fn kind(&self) -> &'static str {
        match self {
            Source::Rest(_) => "rest",
            Source::Database(_) => "database",
        }
    }

    /// Reads `range` into `tx`; returns what was read and whether the cursor
    /// values were timestamps (if known).
    async fn read(
        &self,
        range: CursorRange,
        timestamps: bool,
        batch_size: usize,
        tx: mpsc::Sender<Chunk>,
    ) -> Result<(ReadStats, Option<bool>)> {
        match self {
            Source::Rest(r) => {
                let s = rest::read(r, range, timestamps, batch_size, tx).await?;
                Ok((s.stats, s.cursor_is_timestamp))
            }
            Source::Database(d) => Ok((database::read(d, range, batch_size, tx).await?, None)),
        }
    }
}

/// The committed cursor of one table for the source, and which app id has it.
async fn committed(
    table: Option<&deltalake::DeltaTable>,
    source: &Source<'_>,
) -> Result<Option<(i64, bool)>> {
    let Some(table) = table else {
        return Ok(None);
    };
    for timestamps in [false, true] {
        if let Some(v) = committed_version(table, &source.app_id(timestamps)).await? {
            return Ok(Some((v, timestamps)));
        }
    }
    Ok(None)
}

async fn ingest(
    ctx: &IngestContext,
    spec: &DataSpec,
    source: Source<'_>,
    run_id: String,
) -> Result<IngestionResult> {
    let options = &ctx.roots.options;
    let raw_url = ctx.roots.table_url(Zone::Raw, &spec.dataset);
    let q_url = ctx.roots.quarantine_url(&spec.dataset);
    let incremental = source.cursor_field().is_some();
    let (raw_cursor, q_cursor) = if incremental {
        let raw = load_table(&raw_url, options).await?;
        let q = load_table(&q_url, options).await?;
        (
            committed(raw.as_ref(), &source).await?,
            committed(q.as_ref(), &source).await?,
        )
    } else {
        (None, None)
    };
    let timestamps = raw_cursor.or(q_cursor).is_some_and(|(_, ts)| ts);
    let raw_at = raw_cursor.map(|(v, _)| v);
    let q_at = q_cursor.map(|(v, _)| v);

    let mut passes = Vec::new();
    // Records a dead run quarantined but did not land: land them, without
    // quarantining their rejects again.
    if let Some(q) = q_at
        && raw_at.is_none_or(|r| q > r)
    {
        passes.push((
            CursorRange {
                after: raw_at,
                up_to: Some(q),
            },
            false,
        ));
    }
    passes.push((
        CursorRange {
            after: raw_at.max(q_at),
            up_to: None,
        },
        true,
    ));

    let mut meta = IngestionMetadata {
        run_id: run_id.clone(),
        dataset: spec.dataset.clone(),
        quarantine_location: q_url.to_string(),
        ..Default::default()
    };
    let mut run = PullRun {
        ctx,
        spec,
        run_id: &run_id,
        source: &source,
        label: source.label(),
        opened: None,
    };
    let mut max_cursor = raw_at;
    let mut seen_timestamps = None;
    for (range, quarantine) in passes {
        let (tx, rx) = mpsc::channel::<Chunk>(4);
        let reading = source.read(range, timestamps, ctx.batch_size, tx);
        let landing = async {
            // Owned here, so a landing failure drops it and stops the reader.
            let mut rx = rx;
            while let Some(chunk) = rx.recv().await {
                run.land(chunk, quarantine).await?;
            }
            Ok::<_, Error>(())
        };
        let (read, landed) = futures::join!(reading, landing);
        // A landing failure stops the reader too: report the landing's error.
        let outcome = landed.and(read);
        let (stats, ts) = match outcome {
            Ok(v) => v,
            Err(e) => {
                if let Some(o) = &mut run.opened {
                    o.landing.abort();
                }
                return Err(e);
            }
        };
        tracing::debug!(
            "{}: {} record(s) in {} request(s)",
            source.label(),
            stats.records,
            stats.requests
        );
        meta.bytes_read += stats.bytes;
        max_cursor = max_cursor.max(stats.max_cursor);
        seen_timestamps = seen_timestamps.or(ts);
    }

    let Some(Opened {
        mut landing,
        validator,
        schema_version,
    }) = run.opened
    else {
        return Ok(IngestionResult {
            status: IngestionStatus::Skipped,
            location: raw_url.to_string(),
            metadata: meta,
            errors: Vec::new(),
        });
    };
    let txns = match max_cursor {
        Some(cursor) if incremental => {
            let app_id = source.app_id(seen_timestamps.unwrap_or(timestamps));
            vec![Transaction::new(&app_id, cursor)]
        }
        _ => Vec::new(),
    };
    let mut info = serde_json::Map::new();
    info.insert("tarn.run_id".into(), json!(run_id));
    info.insert(
        "tarn.source".into(),
        json!({
            "kind": source.kind(),
            "label": source.label(),
            "cursor_field": source.cursor_field(),
            "cursor": max_cursor,
        }),
    );
    let (q_version, version) = landing.commit(txns.clone(), txns, info).await?;
    meta.quarantine_version = q_version;
    meta.delta_version = Some(version);
    meta.rows_read = landing.counts.read;
    meta.rows_written = landing.counts.written;
    meta.rows_quarantined = landing.counts.quarantined;
    meta.files_ingested = 1;
    meta.files = vec![source.label()];
    meta.schema_version = if validator.added_fields().is_empty() {
        schema_version
    } else {
        ctx.metadata
            .pin_schema(&spec.dataset, &validator.schema().to_avsc())
            .await?
            .version
    };
    register_dataset(ctx, &spec.dataset, landing.raw_url()).await?;
    Ok(IngestionResult {
        status: IngestionStatus::of(&meta),
        location: raw_url.to_string(),
        errors: landing.errors(),
        metadata: meta,
    })
}

/// The state of one pull run: the landing is opened on the first chunk, once
/// the schema is known.
struct PullRun<'a> {
    ctx: &'a IngestContext,
    spec: &'a DataSpec,
    run_id: &'a str,
    source: &'a Source<'a>,
    /// The source as rows and rejects name it.
    label: String,
    opened: Option<Opened>,
}

struct Opened {
    landing: Landing,
    validator: DataValidator,
    schema_version: i64,
}

impl PullRun<'_> {
    async fn land(&mut self, chunk: Chunk, quarantine: bool) -> Result<()> {
        if self.opened.is_none() {
            let mut opened = open(self.ctx, self.spec, self.source, self.run_id, &chunk).await?;
            opened.validator.set_source(&self.label);
            self.opened = Some(opened);
        }
        let o = self.opened.as_mut().expect("opened above");
        let validated = o.validator.validate(chunk)?;
        o.landing.land(validated, &self.label, quarantine).await
    }
}

/// The dataset schema (given, pinned, the database's column types, or
/// inferred from `first`) and writers on the raw and quarantine tables.
async fn open(
    ctx: &IngestContext,
    spec: &DataSpec,
    source: &Source<'_>,
    run_id: &str,
    first: &Chunk,
) -> Result<Opened> {
    let (schema, schema_version) = match given_or_pinned_schema(ctx, spec).await? {
        Some(found) => found,
        None => match source {
            Source::Database(d) => {
                let arrow = database::describe(d).await?;
                let schema = DatasetSchema::from_arrow(&spec.dataset, &arrow)?;
                let v = ctx
                    .metadata
                    .pin_schema(&spec.dataset, &schema.to_avsc())
                    .await?;
                (schema, v.version)
            }
            Source::Rest(_) => pin_inferred_schema(ctx, &spec.dataset, first).await?,
        },
    };
    let (landing, validator) = Landing::open(ctx, spec, schema, run_id).await?;
    Ok(Opened {
        landing,
        validator,
        schema_version,
    })
}
