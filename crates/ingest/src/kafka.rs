//! KafkaConnector: consumes topics through a consumer group and lands each
//! batch in the raw zone exactly once, the way kafka-delta-ingest does.
//!
//! - Every Delta commit carries, per topic-partition, a `txn` action whose
//!   version is the next offset to read. The table, not the group, is the
//!   source of truth: on every assignment the consumer seeks each partition to
//!   the offset in the table (the group's committed offsets are only updated
//!   after each commit, for monitoring).
//! - Before a commit the table is re-read; if another worker has committed one
//!   of the batch's partitions meanwhile (or Delta reports a concurrent `txn`),
//!   the batch is dropped and its partitions are re-read from the table's offsets.
//! - Rejected messages go to the quarantine table, committed first with the same
//!   `txn` versions. Rejects below the quarantine's offset were quarantined by a
//!   run that died before its raw commit and are not written again.
//! - A batch closes at `batch_size` messages or `max_latency`, whichever comes
//!   first. Bounded runs stop once every assigned partition has been read past
//!   the end offset seen at start and to its end (librdkafka's partition-EOF
//!   event; some brokers report wrong end offsets), and is committed; `follow`
//!   runs until `stop` is set, then commits what it holds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Cursor;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use apache_avro::Schema as AvroSchema;
use apache_avro::types::Value as AvroValue;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::{CommitConflictError, TransactionError};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::json;
use tarn_common::Zone;
use tarn_common::config::{KafkaSourceConfig, SourceConfig};
use tokio::runtime::Handle;

use crate::error::{Error, Result};
use crate::landing::Landing;
use crate::pipeline::{
    IngestContext, given_or_pinned_schema, pin_inferred_schema, recorded, register_dataset,
};
use crate::raw_zone::{committed_version, load_table};
use crate::reader::json::JsonRows;
use crate::reader::{Chunk, Reject, avro};
use crate::result::{IngestionMetadata, IngestionResult, IngestionStatus};
use crate::spec::DataSpec;
use crate::validator::DataValidator;

/// Messages per commit unless configured.
const DEFAULT_BATCH_SIZE: usize = 100_000;
/// Longest a message waits for its commit unless configured.
const DEFAULT_MAX_LATENCY: Duration = Duration::from_secs(5);
/// How long a bounded worker without partitions waits for the group to settle.
const IDLE_GRACE: Duration = Duration::from_secs(15);
/// Timeout of metadata and watermark requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A topic-partition.
type Tp = (String, i32);

/// The `txn` app id of a topic-partition.
fn app_id(tp: &Tp) -> String {
    format!("tarn-kafka-{}-{}", tp.0, tp.1)
}

/// Ingests `spec.source` (a Kafka source) into the raw zone: bounded (up to the
/// end of every partition) or, with `spec.follow`, until `spec.stop` is set.
pub async fn ingest_kafka(ctx: &IngestContext, spec: &DataSpec) -> Result<IngestionResult> {
    spec.check()?;
    let Some(SourceConfig::Kafka(cfg)) = &spec.source else {
        return Err(Error::Invalid(format!(
            "dataset `{}` has no Kafka source",
            spec.dataset
        )));
    };
    let settings = Settings::new(spec, cfg)?;
    let label = settings.label();
    recorded(ctx, &spec.dataset, label, |run_id| async move {
        let decoder = Decoder::new(ctx, spec, &settings).await?;
        let worker = Worker::new(ctx.clone(), spec.clone(), settings, decoder, run_id)?;
        let handle = Handle::current();
        tokio::task::spawn_blocking(move || worker.run(&handle))
            .await
            .map_err(|e| Error::Internal(format!("kafka consumer thread: {e}")))?
    })
    .await
}

/// A Kafka source with its defaults filled in.
#[derive(Debug, Clone)]
struct Settings {
    cfg: KafkaSourceConfig,
    topics: Vec<String>,
    group: String,
    format: Format,
    batch_size: usize,
    max_latency: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Avro,
    ConfluentAvro,
}

impl Settings {
    fn new(spec: &DataSpec, cfg: &KafkaSourceConfig) -> Result<Self> {
        let topics = if cfg.topics.is_empty() {
            vec![spec.dataset.clone()]
        } else {
            cfg.topics.clone()
        };
        let format = match cfg.format.as_deref().unwrap_or("json") {
            "json" => Format::Json,
            "avro" => Format::Avro,
            "confluent-avro" | "confluent" => Format::ConfluentAvro,
            other => {
                return Err(Error::Invalid(format!(
                    "unknown Kafka message format `{other}` (expected json, avro or confluent-avro)"
                )));
            }
        };
        if format == Format::ConfluentAvro && cfg.schema_registry.is_none() {
            return Err(Error::Invalid(
                "the confluent-avro format needs a schema registry URL (--schema-registry)".into(),
            ));
        }
        let batch_size = cfg.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if batch_size == 0 {
            return Err(Error::Invalid(
                "the Kafka batch size must be at least 1".into(),
            ));
        }
        Ok(Self {
            topics,
            group: cfg
                .group
                .clone()
                .unwrap_or_else(|| format!("tarn-{}", spec.dataset)),
            format,
            batch_size,
            max_latency: cfg
                .max_latency_ms
                .map_or(DEFAULT_MAX_LATENCY, Duration::from_millis),
            cfg: cfg.clone(),
        })
    }

    fn label(&self) -> String {
        format!("kafka://{}/{}", self.cfg.brokers, self.topics.join(","))
    }

    fn consumer(&self, context: Rebalancer, follow: bool) -> Result<BaseConsumer<Rebalancer>> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.cfg.brokers)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("client.id", "tarn")
            // Bounded runs stop when every partition is read to its end.
            .set(
                "enable.partition.eof",
                if follow { "false" } else { "true" },
            );
        for (k, v) in &self.cfg.properties {
            config.set(k, v);
        }
        let consumer: BaseConsumer<Rebalancer> = config
            .create_with_context(context)
            .map_err(|e| self.error(e))?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(|e| self.error(e))?;
        Ok(consumer)
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::input(self.label(), e)
    }
}

/// Turns message payloads into rows.
enum Decoder {
    Json,
    /// Binary Avro datums written with the dataset schema.
    Avro {
        schema: Box<AvroSchema>,
        scales: HashMap<String, usize>,
    },
    /// The Confluent wire format: magic byte 0, a 4-byte schema id, an Avro
    /// datum written with that schema. The datum is decoded with its writer
    /// schema and the fields the dataset schema lacks are dropped (Avro's
    /// resolution rule); the validator checks the rest against the dataset
    /// schema. (apache-avro 0.21's own resolution rejects valid decimals.)
    Confluent {
        registry: String,
        fields: HashSet<String>,
        writers: HashMap<u32, (AvroSchema, HashMap<String, usize>)>,
        client: reqwest::Client,
    },
}

impl Decoder {
    async fn new(ctx: &IngestContext, spec: &DataSpec, settings: &Settings) -> Result<Self> {
        if settings.format == Format::Json {
            return Ok(Decoder::Json);
        }
        let Some((schema, _)) = given_or_pinned_schema(ctx, spec).await? else {
            return Err(Error::Invalid(format!(
                "Avro messages need the dataset's schema: pass --schema {}.avsc \
                 (or pin one with an earlier ingest)",
                spec.dataset
            )));
        };
        let avro = AvroSchema::parse_str(&schema.to_avsc().to_string())
            .map_err(|e| Error::Invalid(format!("the dataset schema is not valid Avro: {e}")))?;
        Ok(match settings.format {
            Format::Avro => Decoder::Avro {
                scales: avro::decimal_scales(&avro),
                schema: Box::new(avro),
            },
            _ => Decoder::Confluent {
                registry: settings
                    .cfg
                    .schema_registry
                    .clone()
                    .unwrap_or_default()
                    .trim_end_matches('/')
                    .to_string(),
                fields: schema.fields.iter().map(|f| f.name.clone()).collect(),
                writers: HashMap::new(),
                client: reqwest::Client::new(),
            },
        })
    }

    /// Decodes one message into `rows` (or a reject there).
    fn decode(&mut self, handle: &Handle, payload: Option<&[u8]>, rows: &mut JsonRows, at: u64) {
        let Some(payload) = payload else {
            rows.cols
                .reject(reject(at, "the message has no value (a tombstone)", b""));
            return;
        };
        match self {
            Decoder::Json => rows.push_json(payload, at),
            Decoder::Avro { schema, scales } => {
                match apache_avro::from_avro_datum(schema, &mut Cursor::new(payload), None) {
                    Ok(v) => avro::push_value(rows, v, scales, at),
                    Err(e) => {
                        rows.cols
                            .reject(reject(at, &format!("invalid Avro datum: {e}"), payload))
                    }
                }
            }
            Decoder::Confluent {
                registry,
                fields,
                writers,
                client,
            } => {
                let Some((id, datum)) = confluent_header(payload) else {
                    rows.cols.reject(reject(
                        at,
                        "not in the Confluent wire format (magic byte 0 and a schema id)",
                        payload,
                    ));
                    return;
                };
                if let std::collections::hash_map::Entry::Vacant(slot) = writers.entry(id) {
                    match handle.block_on(fetch_schema(client, registry, id)) {
                        Ok(s) => {
                            let scales = avro::decimal_scales(&s);
                            slot.insert((s, scales));
                        }
                        Err(e) => {
                            rows.cols.reject(reject(at, &e, payload));
                            return;
                        }
                    }
                }
                let (writer, scales) = &writers[&id];
                match apache_avro::from_avro_datum(writer, &mut Cursor::new(datum), None) {
                    Ok(AvroValue::Record(values)) => {
                        let kept = values.into_iter().filter(|(k, _)| fields.contains(k));
                        avro::push_value(rows, AvroValue::Record(kept.collect()), scales, at);
                    }
                    Ok(other) => avro::push_value(rows, other, scales, at),
                    Err(e) => rows.cols.reject(reject(
                        at,
                        &format!("invalid Avro datum for schema id {id}: {e}"),
                        payload,
                    )),
                }
            }
        }
    }
}

/// The schema id and datum of a Confluent-framed message.
fn confluent_header(payload: &[u8]) -> Option<(u32, &[u8])> {
    match payload {
        [0, a, b, c, d, rest @ ..] => Some((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        _ => None,
    }
}

/// Fetches a writer schema from a Confluent-compatible schema registry.
async fn fetch_schema(
    client: &reqwest::Client,
    registry: &str,
    id: u32,
) -> std::result::Result<AvroSchema, String> {
    let url = format!("{registry}/schemas/ids/{id}");
    let fail = |e: &dyn std::fmt::Display| format!("cannot fetch schema id {id} from {url}: {e}");
    let resp = client.get(&url).send().await.map_err(|e| fail(&e))?;
    if !resp.status().is_success() {
        return Err(fail(&resp.status()));
    }
    let bytes = resp.bytes().await.map_err(|e| fail(&e))?;
    let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| fail(&e))?;
    let text = body
        .get("schema")
        .and_then(|s| s.as_str())
        .ok_or_else(|| fail(&"the response has no `schema`"))?;
    AvroSchema::parse_str(text).map_err(|e| fail(&e))
}

/// A reject of a whole message; binary payloads are kept as base64.
fn reject(position: u64, reason: &str, payload: &[u8]) -> Reject {
    let payload = match std::str::from_utf8(payload) {
        Ok(text) => text.to_string(),
        Err(_) => {
            use base64::Engine as _;
            format!(
                "base64:{}",
                base64::engine::general_purpose::STANDARD.encode(payload)
            )
        }
    };
    Reject {
        position,
        field: None,
        reason: reason.to_string(),
        payload,
    }
}

/// What the table says about one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Committed {
    /// Next offset to land, from the raw table.
    raw: Option<i64>,
    /// Next offset whose rejects are not yet quarantined.
    quarantine: Option<i64>,
}

/// The committed positions of `tps` in the raw and quarantine tables.
async fn committed_positions(
    ctx: &IngestContext,
    dataset: &str,
    tps: &[Tp],
) -> Result<HashMap<Tp, Committed>> {
    let raw = load_table(&ctx.roots.table_url(Zone::Raw, dataset), &ctx.roots.options).await?;
    let q = load_table(&ctx.roots.quarantine_url(dataset), &ctx.roots.options).await?;
    let mut out = HashMap::new();
    for tp in tps {
        let id = app_id(tp);
        let mut c = Committed::default();
        if let Some(t) = &raw {
            c.raw = committed_version(t, &id).await?;
        }
        if let Some(t) = &q {
            c.quarantine = committed_version(t, &id).await?;
        }
        out.insert(tp.clone(), c);
    }
    Ok(out)
}

/// A change of assignment, seen by the consumer thread after a poll.
enum Assignment {
    Assigned(HashMap<Tp, Committed>),
    Revoked,
    Failed(String),
}

/// Consumer context: on assignment, seeks every partition to the offset
/// committed in the table.
struct Rebalancer {
    handle: Handle,
    ctx: IngestContext,
    dataset: String,
    changed: Mutex<Option<Assignment>>,
}

impl ClientContext for Rebalancer {
    fn error(&self, error: KafkaError, reason: &str) {
        // Reaching the end of a partition is how bounded runs know they are done.
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::error!("kafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for Rebalancer {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let change = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => match consumer.unassign() {
                Ok(()) => Assignment::Revoked,
                Err(e) => Assignment::Failed(format!("cannot give up partitions: {e}")),
            },
            other => {
                tracing::warn!("kafka rebalance error: {other:?}");
                return;
            }
        };
        *self.changed.lock().expect("not poisoned") = Some(change);
    }
}

impl Rebalancer {
    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) -> Assignment {
        let tps: Vec<Tp> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let positions =
            match self
                .handle
                .block_on(committed_positions(&self.ctx, &self.dataset, &tps))
            {
                Ok(p) => p,
                Err(e) => {
                    return Assignment::Failed(format!("cannot read the table's offsets: {e}"));
                }
            };
        for (tp, c) in &positions {
            let offset = c.raw.map_or(Offset::Beginning, Offset::Offset);
            if let Err(e) = tpl.set_partition_offset(&tp.0, tp.1, offset) {
                return Assignment::Failed(format!(
                    "cannot set the offset of {}/{}: {e}",
                    tp.0, tp.1
                ));
            }
        }
        match consumer.assign(tpl) {
            Ok(()) => {
                tracing::info!("assigned {} partition(s): {:?}", tps.len(), positions);
                Assignment::Assigned(positions)
            }
            Err(e) => Assignment::Failed(format!("cannot take partitions: {e}")),
        }
    }
}

/// One assigned partition.
#[derive(Debug, Clone)]
struct Part {
    committed: Committed,
    /// Next offset to read.
    next: Option<i64>,
}

/// Messages read since the last commit.
#[derive(Default)]
struct Batch {
    started: Option<Instant>,
    messages: usize,
    /// Per partition: rows not yet handed to the validator, and the next
    /// offset after the last message read.
    open: BTreeMap<Tp, (JsonRows, i64)>,
}

/// The landing, opened on the first message once the schema is known.
struct Opened {
    landing: Landing,
    validator: DataValidator,
}

/// The consumer loop, on a blocking thread.
struct Worker {
    ctx: IngestContext,
    spec: DataSpec,
    settings: Settings,
    decoder: Decoder,
    run_id: String,
    opened: Option<Opened>,
    schema_version: i64,
    parts: BTreeMap<Tp, Part>,
    batch: Batch,
    /// Low and high watermarks of every partition at start (bounded runs).
    ends: HashMap<Tp, (i64, i64)>,
    /// Partitions read to their end (bounded runs), until a message arrives.
    at_end: HashSet<Tp>,
    meta: IngestionMetadata,
    commits: u64,
}

impl Worker {
    fn new(
        ctx: IngestContext,
        spec: DataSpec,
        settings: Settings,
        decoder: Decoder,
        run_id: String,
    ) -> Result<Self> {
        let meta = IngestionMetadata {
            run_id: run_id.clone(),
            dataset: spec.dataset.clone(),
            quarantine_location: ctx.roots.quarantine_url(&spec.dataset).to_string(),
            ..Default::default()
        };
        Ok(Self {
            ctx,
            spec,
            settings,
            decoder,
            run_id,
            opened: None,
            schema_version: 0,
            parts: BTreeMap::new(),
            batch: Batch::default(),
            ends: HashMap::new(),
            at_end: HashSet::new(),
            meta,
            commits: 0,
        })
    }

    fn run(mut self, handle: &Handle) -> Result<IngestionResult> {
        let consumer = self.settings.consumer(
            Rebalancer {
                handle: handle.clone(),
                ctx: self.ctx.clone(),
                dataset: self.spec.dataset.clone(),
                changed: Mutex::new(None),
            },
            self.spec.follow,
        )?;
        if !self.spec.follow {
            self.ends = self.end_offsets(&consumer)?;
        }
        let outcome = self.consume(handle, &consumer);
        if outcome.is_err()
            && let Some(o) = &mut self.opened
        {
            o.landing.abort();
        }
        outcome?;
        let raw_url = self.ctx.roots.table_url(Zone::Raw, &self.spec.dataset);
        let Some(o) = &self.opened else {
            return Ok(IngestionResult {
                status: IngestionStatus::Skipped,
                location: raw_url.to_string(),
                metadata: self.meta,
                errors: Vec::new(),
            });
        };
        let mut meta = self.meta.clone();
        meta.rows_read = o.landing.counts.read;
        meta.rows_written = o.landing.counts.written;
        meta.rows_quarantined = o.landing.counts.quarantined;
        meta.schema_version = self.schema_version;
        meta.files_ingested = self.settings.topics.len();
        meta.files = self
            .settings
            .topics
            .iter()
            .map(|t| format!("kafka://{}/{t}", self.settings.cfg.brokers))
            .collect();
        handle.block_on(register_dataset(&self.ctx, &self.spec.dataset, &raw_url))?;
        let status = if self.commits == 0 {
            IngestionStatus::Skipped
        } else {
            IngestionStatus::of(&meta)
        };
        Ok(IngestionResult {
            status,
            location: raw_url.to_string(),
            errors: o.landing.errors(),
            metadata: meta,
        })
    }

    /// The low and high watermarks of every partition of the topics.
    fn end_offsets(&self, consumer: &BaseConsumer<Rebalancer>) -> Result<HashMap<Tp, (i64, i64)>> {
        let mut out = HashMap::new();
        for topic in &self.settings.topics {
            let md = consumer
                .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
                .map_err(|e| self.settings.error(e))?;
            let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
                return Err(self.settings.error(format!("no topic `{topic}`")));
            };
            if t.error().is_some() || t.partitions().is_empty() {
                return Err(self.settings.error(format!(
                    "topic `{topic}` does not exist or has no partitions"
                )));
            }
            for p in t.partitions() {
                let w = consumer
                    .fetch_watermarks(topic, p.id(), REQUEST_TIMEOUT)
                    .map_err(|e| self.settings.error(e))?;
                out.insert((topic.clone(), p.id()), w);
            }
        }
        Ok(out)
    }

    fn consume(&mut self, handle: &Handle, consumer: &BaseConsumer<Rebalancer>) -> Result<()> {
        let started = Instant::now();
        let mut last_check = started;
        let mut last: Tp = (String::new(), -1);
        loop {
            let stopping = self
                .spec
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Relaxed));
            if stopping {
                return self.commit(handle, consumer).map(drop);
            }
            let polled = consumer.poll(Duration::from_millis(100));
            self.apply_rebalance(consumer)?;
            match polled {
                Some(Ok(m)) => {
                    // Messages come in runs of one partition: reuse its key.
                    if last.0 != m.topic() || last.1 != m.partition() {
                        last = (m.topic().to_string(), m.partition());
                    }
                    if !self.at_end.is_empty() {
                        self.at_end.remove(&last);
                    }
                    self.add(handle, &last, m.offset(), m.payload())?;
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    // The event names the partition only; with several topics
                    // it marks that partition of each.
                    let tps: Vec<Tp> = self.parts.keys().filter(|tp| tp.1 == p).cloned().collect();
                    self.at_end.extend(tps);
                }
                None => {}
                // librdkafka reconnects by itself; say so and keep going.
                Some(Err(KafkaError::MessageConsumption(code))) if transient(code) => {
                    tracing::warn!("kafka: {code}; retrying");
                }
                Some(Err(e)) => return Err(self.settings.error(e)),
            }
            let full = self.batch.messages >= self.settings.batch_size;
            let late = self
                .batch
                .started
                .is_some_and(|s| s.elapsed() >= self.settings.max_latency);
            let caught_up = !self.spec.follow && self.assigned_done();
            if full || late || caught_up {
                self.commit(handle, consumer)?;
            }
            if self.spec.follow || self.batch.messages > 0 {
                continue;
            }
            if caught_up && self.assigned_done() {
                return Ok(());
            }
            // A worker left without partitions (more workers than partitions)
            // stops once the group has settled and the table holds everything.
            if self.parts.is_empty()
                && started.elapsed() >= IDLE_GRACE
                && last_check.elapsed() >= Duration::from_secs(1)
            {
                last_check = Instant::now();
                if self.all_done(handle)? {
                    return Ok(());
                }
            }
        }
    }

    /// Applies an assignment change seen during the last poll: what was read
    /// but not committed is dropped (the new owners read it from the table).
    fn apply_rebalance(&mut self, consumer: &BaseConsumer<Rebalancer>) -> Result<()> {
        let change = consumer
            .context()
            .changed
            .lock()
            .expect("not poisoned")
            .take();
        match change {
            None => Ok(()),
            Some(Assignment::Failed(e)) => Err(self.settings.error(e)),
            Some(Assignment::Revoked) => {
                self.drop_batch();
                self.parts.clear();
                Ok(())
            }
            Some(Assignment::Assigned(positions)) => {
                self.drop_batch();
                self.parts = positions
                    .into_iter()
                    .map(|(tp, committed)| {
                        let part = Part {
                            committed,
                            next: committed.raw,
                        };
                        (tp, part)
                    })
                    .collect();
                Ok(())
            }
        }
    }

    fn drop_batch(&mut self) {
        self.at_end.clear();
        if self.batch.messages > 0 {
            tracing::info!(
                "dropping {} uncommitted message(s) after a rebalance",
                self.batch.messages
            );
        }
        self.batch = Batch::default();
        if let Some(o) = &mut self.opened {
            o.landing.abort();
        }
    }

    /// Adds one message to the batch.
    fn add(&mut self, handle: &Handle, tp: &Tp, offset: i64, payload: Option<&[u8]>) -> Result<()> {
        let Some(part) = self.parts.get_mut(tp) else {
            return Ok(());
        };
        // A broker that sends an offset again (seen with tansu after a seek)
        // must not make a message land twice.
        if part.next.is_some_and(|n| offset < n) {
            tracing::debug!("skipping {}/{}@{offset}: already read", tp.0, tp.1);
            return Ok(());
        }
        part.next = Some(offset + 1);
        self.meta.bytes_read += payload.map_or(0, |p| p.len() as u64);
        let q_next = part.committed.quarantine;
        let at = u64::try_from(offset).unwrap_or_default();
        // Rows below the quarantine's offset land in their own chunk: their
        // rejects are already quarantined.
        let crosses = q_next == Some(offset);
        if crosses {
            self.flush_partition(handle, tp)?;
        }
        let batch_size = self.ctx.batch_size;
        if !self.batch.open.contains_key(tp) {
            let rows = (JsonRows::new(batch_size), offset);
            self.batch.open.insert(tp.clone(), rows);
        }
        let entry = self.batch.open.get_mut(tp).expect("inserted above");
        self.decoder.decode(handle, payload, &mut entry.0, at);
        entry.1 = offset + 1;
        self.batch.messages += 1;
        self.batch.started.get_or_insert_with(Instant::now);
        if entry.0.len() >= batch_size {
            self.flush_partition(handle, tp)?;
        }
        Ok(())
    }

    /// Validates and stages the rows held for `tp`.
    fn flush_partition(&mut self, handle: &Handle, tp: &Tp) -> Result<()> {
        let Some((rows, _)) = self.batch.open.get_mut(tp) else {
            return Ok(());
        };
        if rows.len() == 0 {
            return Ok(());
        }
        let chunk = rows.take();
        let first = chunk
            .positions
            .first()
            .copied()
            .or_else(|| chunk.rejects.first().map(|r| r.position))
            .unwrap_or_default();
        let quarantine = self.parts.get(tp).and_then(|p| p.committed.quarantine);
        let quarantine = quarantine.is_none_or(|q| i64::try_from(first).unwrap_or(i64::MAX) >= q);
        if self.opened.is_none() {
            self.opened = Some(handle.block_on(self.open(&chunk))?);
        }
        let o = self.opened.as_mut().expect("opened above");
        let source = format!("kafka:{}/{}", tp.0, tp.1);
        o.validator.set_source(&source);
        let validated = o.validator.validate(chunk)?;
        handle.block_on(o.landing.land(validated, &source, quarantine))
    }

    async fn open(&mut self, first: &Chunk) -> Result<Opened> {
        let (schema, version) = match given_or_pinned_schema(&self.ctx, &self.spec).await? {
            Some(found) => found,
            None => pin_inferred_schema(&self.ctx, &self.spec.dataset, first).await?,
        };
        self.schema_version = version;
        let (landing, validator) =
            Landing::open(&self.ctx, &self.spec, schema, &self.run_id).await?;
        Ok(Opened { landing, validator })
    }

    /// Commits the batch; on a conflict with another worker, drops it and
    /// re-reads its partitions from the table. Returns whether it committed.
    fn commit(&mut self, handle: &Handle, consumer: &BaseConsumer<Rebalancer>) -> Result<bool> {
        if self.batch.messages == 0 {
            return Ok(false);
        }
        let tps: Vec<Tp> = self.batch.open.keys().cloned().collect();
        for tp in &tps {
            self.flush_partition(handle, tp)?;
        }
        let ends: Vec<(Tp, i64)> = self
            .batch
            .open
            .iter()
            .map(|(tp, (_, next))| (tp.clone(), *next))
            .collect();
        let expected: HashMap<Tp, Committed> = tps
            .iter()
            .filter_map(|tp| Some((tp.clone(), self.parts.get(tp)?.committed)))
            .collect();
        let txns: Vec<Transaction> = ends
            .iter()
            .map(|(tp, next)| Transaction::new(app_id(tp), *next))
            .collect();
        let mut info = serde_json::Map::new();
        info.insert("tarn.run_id".into(), json!(self.run_id));
        info.insert(
            "tarn.kafka".into(),
            json!(
                ends.iter()
                    .map(
                        |(tp, next)| json!({"topic": tp.0, "partition": tp.1, "next_offset": next})
                    )
                    .collect::<Vec<_>>()
            ),
        );
        let ids: Vec<String> = tps.iter().map(app_id).collect();
        let o = self
            .opened
            .as_mut()
            .expect("a batch with messages opened the landing");
        let versions = handle.block_on(async {
            // Another worker may have landed these partitions since we read them.
            let now = o.landing.committed(&ids).await?;
            let moved = tps.iter().zip(now).any(|(tp, (raw, quarantine))| {
                expected.get(tp) != Some(&Committed { raw, quarantine })
            });
            if moved {
                return Ok(None);
            }
            match o.landing.commit(txns.clone(), txns, info).await {
                Ok(v) => Ok(Some(v)),
                Err(e) if is_txn_conflict(&e) => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        let Some((q_version, version)) = versions else {
            tracing::warn!("another worker committed these partitions first; re-reading them");
            self.batch = Batch::default();
            handle.block_on(o.landing.reload())?;
            self.reseek(handle, consumer)?;
            return Ok(false);
        };
        self.commits += 1;
        self.meta.delta_version = Some(version);
        if q_version.is_some() {
            self.meta.quarantine_version = q_version;
        }
        let mut offsets = TopicPartitionList::new();
        for (tp, next) in &ends {
            if let Some(p) = self.parts.get_mut(tp) {
                p.committed.raw = Some(*next);
                if q_version.is_some() {
                    p.committed.quarantine = Some(*next);
                }
            }
            offsets
                .add_partition_offset(&tp.0, tp.1, Offset::Offset(*next))
                .map_err(|e| self.settings.error(e))?;
        }
        // For monitoring only: the table holds the offsets that count.
        if let Err(e) = consumer.commit(&offsets, CommitMode::Async) {
            tracing::debug!("cannot commit offsets to the group: {e}");
        }
        tracing::info!(
            "committed {} message(s) to raw/{} v{version}",
            self.batch.messages,
            self.spec.dataset
        );
        self.batch = Batch::default();
        Ok(true)
    }

    /// Seeks every assigned partition to the offsets in the table.
    fn reseek(&mut self, handle: &Handle, consumer: &BaseConsumer<Rebalancer>) -> Result<()> {
        self.at_end.clear();
        let tps: Vec<Tp> = self.parts.keys().cloned().collect();
        let now = handle.block_on(committed_positions(&self.ctx, &self.spec.dataset, &tps))?;
        for (tp, c) in now {
            let offset = c.raw.map_or(Offset::Beginning, Offset::Offset);
            consumer
                .seek(&tp.0, tp.1, offset, REQUEST_TIMEOUT)
                .map_err(|e| self.settings.error(e))?;
            self.parts.insert(
                tp,
                Part {
                    committed: c,
                    next: c.raw,
                },
            );
        }
        Ok(())
    }

    /// Whether every assigned partition has been read past the end offset
    /// seen at start and up to its current end.
    fn assigned_done(&self) -> bool {
        !self.parts.is_empty()
            && self.parts.iter().all(|(tp, p)| {
                let past_start_end = match self.ends.get(tp) {
                    Some(&(low, high)) => p.next.unwrap_or(low).max(low) >= high,
                    None => true,
                };
                past_start_end && self.at_end.contains(tp)
            })
    }

    /// Whether the table holds every partition up to its end offset.
    fn all_done(&self, handle: &Handle) -> Result<bool> {
        let tps: Vec<Tp> = self.ends.keys().cloned().collect();
        let now = handle.block_on(committed_positions(&self.ctx, &self.spec.dataset, &tps))?;
        Ok(self.ends.iter().all(|(tp, &(low, high))| {
            low >= high || now.get(tp).and_then(|c| c.raw).is_some_and(|n| n >= high)
        }))
    }
}

/// Consumer errors that librdkafka recovers from on its own.
fn transient(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::RequestTimedOut
    )
}

/// Whether a commit failed because another writer committed the same `txn`.
fn is_txn_conflict(e: &Error) -> bool {
    matches!(e, Error::Delta { source, .. } if matches!(
        source.as_ref(),
        deltalake::DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(CommitConflictError::ConcurrentTransaction)
        }
    ))
}
