//! OpenLineage run events: [`RunEvent`] builds the JSON of an OpenLineage
//! `RunEvent` (core spec 2-0-2) with tarn's facets, and [`Emitter`] sends
//! events to a JSON Lines file and/or an HTTP endpoint that speaks the
//! Marquez lineage API (`POST /api/v1/lineage`).
//!
//! Facets emitted, each with `_producer` [`PRODUCER`] and the `_schemaURL` of
//! the facet version it follows:
//! - dataset `schema` (SchemaDatasetFacet 1-0-0), from [`EventDataset::fields`];
//! - dataset `dataQualityAssertions` (DataQualityAssertionsDatasetFacet 1-2-0),
//!   from [`EventDataset::quality`], on inputs and outputs;
//! - output dataset `columnLineage` (ColumnLineageDatasetFacet 1-1-0), from
//!   [`EventDataset::column_lineage`];
//! - input `dataQualityMetrics` (DataQualityMetricsInputDatasetFacet 1-0-3) and
//!   output `outputStatistics` (OutputStatisticsOutputDatasetFacet 1-0-0), from
//!   the row and byte counts;
//! - run `errorMessage` (ErrorMessageRunFacet 1-0-0), from [`RunEvent::error`];
//! - run `tarn_run` (custom): tarn's own run id when it is not a canonical UUID
//!   (OpenLineage requires one; a stable UUID is derived from it instead). Its
//!   `_schemaURL` is under [`PRODUCER`]; no document is published there yet.
//!
//! Every dataset, and every input field of column lineage, is in the event's
//! namespace.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::ColumnLineage;

/// The `producer` and `_producer` of every event and facet tarn emits.
pub const PRODUCER: &str = "https://github.com/tarn-lake/tarn";

const RUN_EVENT_SCHEMA: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const SCHEMA_FACET: &str =
    "https://openlineage.io/spec/facets/1-0-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet";
const COLUMN_LINEAGE_FACET: &str = "https://openlineage.io/spec/facets/1-1-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet";
const QUALITY_METRICS_FACET: &str = "https://openlineage.io/spec/facets/1-0-3/DataQualityMetricsInputDatasetFacet.json#/$defs/DataQualityMetricsInputDatasetFacet";
const QUALITY_ASSERTIONS_FACET: &str = "https://openlineage.io/spec/facets/1-2-0/DataQualityAssertionsDatasetFacet.json#/$defs/DataQualityAssertionsDatasetFacet";
const OUTPUT_STATISTICS_FACET: &str = "https://openlineage.io/spec/facets/1-0-0/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet";
const ERROR_MESSAGE_FACET: &str = "https://openlineage.io/spec/facets/1-0-0/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";
const TARN_RUN_FACET: &str =
    "https://github.com/tarn-lake/tarn/spec/facets/1-0-0/TarnRunFacet.json#/$defs/TarnRunFacet";

/// The path of the Marquez-compatible lineage endpoint.
const LINEAGE_PATH: &str = "/api/v1/lineage";
/// How long one POST may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The run state transition an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The run started (`START`).
    Start,
    /// The run finished successfully (`COMPLETE`).
    Complete,
    /// The run failed (`FAIL`).
    Fail,
}

impl EventType {
    /// The `eventType` value: `START`, `COMPLETE` or `FAIL`.
    pub fn as_str(&self) -> &'static str {
        match self {
            EventType::Start => "START",
            EventType::Complete => "COMPLETE",
            EventType::Fail => "FAIL",
        }
    }
}

/// One dataset of an event.
#[derive(Debug, Clone, Default)]
pub struct EventDataset {
    /// `zone/dataset` (e.g. `raw/user_events`) or a source URI.
    pub name: String,
    /// The schema facet: (column name, type text); empty means no schema facet.
    pub fields: Vec<(String, String)>,
    /// Rows read (inputs: `dataQualityMetrics.rowCount`) or written (outputs:
    /// `outputStatistics.rowCount`; an output without it gets no statistics).
    pub row_count: Option<i64>,
    /// Bytes read (inputs: `dataQualityMetrics.bytes`) or written (outputs:
    /// `outputStatistics.size`).
    pub bytes: Option<i64>,
    /// Quality checks of the dataset (the `dataQualityAssertions` facet).
    pub quality: Vec<Assertion>,
    /// Column lineage of an output (the `columnLineage` facet); inputs `zone/dataset.column`.
    /// Ignored on inputs.
    pub column_lineage: Vec<ColumnLineage>,
}

/// One quality check and its outcome.
#[derive(Debug, Clone)]
pub struct Assertion {
    /// What was checked, e.g. `not_null`.
    pub assertion: String,
    /// Whether the data passed.
    pub success: bool,
    /// The column checked; `None` for the whole dataset.
    pub column: Option<String>,
}

/// An OpenLineage run event of a tarn job run.
#[derive(Debug, Clone)]
pub struct RunEvent {
    /// The transition reported.
    pub event_type: EventType,
    /// When it happened.
    pub event_time: DateTime<Utc>,
    /// tarn's run id. Emitted as is when it is a UUID in canonical form,
    /// otherwise replaced by a stable UUID derived from it, with the original
    /// in the custom `tarn_run` run facet.
    pub run_id: String,
    /// The namespace of the job and of every dataset.
    pub namespace: String,
    /// The job, e.g. `cleanse:user_events`.
    pub job: String,
    /// Datasets read.
    pub inputs: Vec<EventDataset>,
    /// Datasets written.
    pub outputs: Vec<EventDataset>,
    /// Why the run failed: the `errorMessage` run facet (language `rust`).
    pub error: Option<String>,
}

impl RunEvent {
    /// The event as OpenLineage JSON.
    pub fn to_json(&self) -> Value {
        let run_id = run_uuid(&self.run_id);
        let mut run_facets = Map::new();
        if run_id != self.run_id {
            run_facets.insert(
                "tarn_run".into(),
                facet(TARN_RUN_FACET, [("runId", json!(self.run_id))]),
            );
        }
        if let Some(message) = &self.error {
            run_facets.insert(
                "errorMessage".into(),
                facet(
                    ERROR_MESSAGE_FACET,
                    [
                        ("message", json!(message)),
                        ("programmingLanguage", json!("rust")),
                    ],
                ),
            );
        }
        let inputs: Vec<Value> = self.inputs.iter().map(|d| self.input(d)).collect();
        let outputs: Vec<Value> = self.outputs.iter().map(|d| self.output(d)).collect();
        json!({
            "eventType": self.event_type.as_str(),
            "eventTime": self.event_time.to_rfc3339_opts(SecondsFormat::Millis, true),
            "run": { "runId": run_id, "facets": run_facets },
            "job": { "namespace": self.namespace, "name": self.job, "facets": {} },
            "inputs": inputs,
            "outputs": outputs,
            "producer": PRODUCER,
            "schemaURL": RUN_EVENT_SCHEMA,
        })
    }

    /// An input dataset: schema and assertions, plus the metrics read.
    fn input(&self, dataset: &EventDataset) -> Value {
        let mut input_facets = Map::new();
        if dataset.row_count.is_some() || dataset.bytes.is_some() {
            let mut metrics = vec![("columnMetrics", json!({}))];
            if let Some(rows) = dataset.row_count {
                metrics.push(("rowCount", json!(rows)));
            }
            if let Some(bytes) = dataset.bytes {
                metrics.push(("bytes", json!(bytes)));
            }
            input_facets.insert(
                "dataQualityMetrics".into(),
                facet(QUALITY_METRICS_FACET, metrics),
            );
        }
        json!({
            "namespace": self.namespace,
            "name": dataset.name,
            "facets": self.dataset_facets(dataset, false),
            "inputFacets": input_facets,
        })
    }

    /// An output dataset: schema, assertions and column lineage, plus the
    /// statistics written.
    fn output(&self, dataset: &EventDataset) -> Value {
        let mut output_facets = Map::new();
        if let Some(rows) = dataset.row_count {
            let mut statistics = vec![("rowCount", json!(rows))];
            if let Some(bytes) = dataset.bytes {
                statistics.push(("size", json!(bytes)));
            }
            output_facets.insert(
                "outputStatistics".into(),
                facet(OUTPUT_STATISTICS_FACET, statistics),
            );
        }
        json!({
            "namespace": self.namespace,
            "name": dataset.name,
            "facets": self.dataset_facets(dataset, true),
            "outputFacets": output_facets,
        })
    }

    /// The dataset facets: `schema`, `dataQualityAssertions` and, for
    /// outputs, `columnLineage`.
    fn dataset_facets(&self, dataset: &EventDataset, output: bool) -> Map<String, Value> {
        let mut facets = Map::new();
        if !dataset.fields.is_empty() {
            let fields: Vec<Value> = dataset
                .fields
                .iter()
                .map(|(name, kind)| {
                    if kind.is_empty() {
                        json!({ "name": name })
                    } else {
                        json!({ "name": name, "type": kind })
                    }
                })
                .collect();
            facets.insert(
                "schema".into(),
                facet(SCHEMA_FACET, [("fields", Value::Array(fields))]),
            );
        }
        if !dataset.quality.is_empty() {
            let assertions: Vec<Value> = dataset
                .quality
                .iter()
                .map(|a| {
                    let mut assertion = json!({ "assertion": a.assertion, "success": a.success });
                    if let Some(column) = &a.column {
                        assertion["column"] = json!(column);
                    }
                    assertion
                })
                .collect();
            facets.insert(
                "dataQualityAssertions".into(),
                facet(
                    QUALITY_ASSERTIONS_FACET,
                    [("assertions", Value::Array(assertions))],
                ),
            );
        }
        if output && !dataset.column_lineage.is_empty() {
            facets.insert(
                "columnLineage".into(),
                facet(
                    COLUMN_LINEAGE_FACET,
                    [("fields", self.column_fields(&dataset.column_lineage))],
                ),
            );
        }
        facets
    }

    /// The `fields` of the column lineage facet: per output column, its input
    /// fields and how it is derived from them.
    fn column_fields(&self, columns: &[ColumnLineage]) -> Value {
        let mut fields = Map::new();
        for column in columns {
            let (kind, description) = if column.kind == "identity" {
                ("IDENTITY", "copied or renamed from the input column")
            } else {
                ("TRANSFORMATION", "computed from the input columns")
            };
            let input_fields: Vec<Value> = column
                .inputs
                .iter()
                .map(|input| {
                    let (name, field) = split_column_ref(input);
                    json!({
                        "namespace": self.namespace,
                        "name": name,
                        "field": field,
                        "transformations": [{ "type": "DIRECT", "subtype": kind }],
                    })
                })
                .collect();
            fields.insert(
                column.column.clone(),
                json!({
                    "inputFields": input_fields,
                    "transformationDescription": description,
                    "transformationType": kind,
                }),
            );
        }
        Value::Object(fields)
    }
}

/// A facet: `_producer`, `_schemaURL` and the given fields.
fn facet<I>(schema_url: &str, fields: I) -> Value
where
    I: IntoIterator<Item = (&'static str, Value)>,
{
    let mut facet = Map::new();
    facet.insert("_producer".into(), json!(PRODUCER));
    facet.insert("_schemaURL".into(), json!(schema_url));
    for (key, value) in fields {
        facet.insert(key.into(), value);
    }
    Value::Object(facet)
}

/// The run id as a canonical (lower-case, hyphenated) UUID: `id` itself when
/// it parses as one, otherwise a stable UUID made from a BLAKE3 hash of it
/// (RFC 4122 version 4 layout).
fn run_uuid(id: &str) -> String {
    let uuid = Uuid::parse_str(id).unwrap_or_else(|_| {
        let hash = blake3::hash(id.as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&hash.as_bytes()[..16]);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    });
    uuid.hyphenated().to_string()
}

/// Splits `zone/dataset.column` into the dataset (`zone/dataset`) and the
/// column: at the first `.` after the last `/`, so column names may hold dots.
/// A reference without a `.` there is all dataset.
fn split_column_ref(reference: &str) -> (&str, &str) {
    let start = reference.rfind('/').map_or(0, |slash| slash + 1);
    match reference[start..].find('.') {
        Some(dot) => (&reference[..start + dot], &reference[start + dot + 1..]),
        None => (reference, ""),
    }
}

/// Where events go: a JSON Lines file, an HTTP lineage endpoint, both or
/// neither.
#[derive(Debug, Clone)]
pub struct Emitter {
    file: Option<PathBuf>,
    http: Option<Endpoint>,
}

/// A Marquez-compatible lineage endpoint.
#[derive(Debug, Clone)]
struct Endpoint {
    /// The full URL posted to (ends with `/api/v1/lineage`).
    url: String,
    client: reqwest::Client,
}

impl Emitter {
    /// An emitter appending to `file` (JSON Lines; parent directories are
    /// created) and posting to `url`: a server base URL such as
    /// `http://127.0.0.1:5000` (events go to `{url}/api/v1/lineage`) or the
    /// full lineage endpoint. An empty path or URL counts as none.
    pub fn new(file: Option<PathBuf>, url: Option<String>) -> Self {
        let file = file.filter(|path| !path.as_os_str().is_empty());
        let http = url
            .map(|url| url.trim().trim_end_matches('/').to_string())
            .filter(|url| !url.is_empty())
            .map(|url| Endpoint {
                url: if url.ends_with(LINEAGE_PATH) {
                    url
                } else {
                    format!("{url}{LINEAGE_PATH}")
                },
                client: reqwest::Client::new(),
            });
        Emitter { file, http }
    }

    /// Whether any destination is set.
    pub fn is_enabled(&self) -> bool {
        self.file.is_some() || self.http.is_some()
    }

    /// Sends one event to every destination: appends it as one line to the
    /// file and POSTs it to the endpoint (10 s timeout). A failed write, an
    /// unreachable endpoint or an HTTP status of 400 or more is an
    /// [`Error::Invalid`] naming the file or URL.
    pub async fn emit(&self, event: &RunEvent) -> Result<()> {
        let body = event.to_json().to_string();
        if let Some(path) = &self.file {
            let path = path.clone();
            let line = format!("{body}\n");
            let shown = path.display().to_string();
            tokio::task::spawn_blocking(move || append(&path, line.as_bytes()))
                .await
                .map_err(|e| {
                    Error::Invalid(format!("OpenLineage: writing {shown} was interrupted: {e}"))
                })??;
        }
        if let Some(endpoint) = &self.http {
            endpoint.post(body).await?;
        }
        Ok(())
    }
}

impl Endpoint {
    /// POSTs one event.
    async fn post(&self, body: String) -> Result<()> {
        let url = &self.url;
        let response = self
            .client
            .post(url.as_str())
            .header("content-type", "application/json")
            .timeout(HTTP_TIMEOUT)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let cause = error_chain(&e);
                Error::Invalid(format!("OpenLineage: POST {url} failed: {cause}"))
            })?;
        let status = response.status();
        if status.is_client_error() || status.is_server_error() {
            let text = response.text().await.unwrap_or_default();
            let detail: String = text.trim().chars().take(300).collect();
            let detail = if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            };
            return Err(Error::Invalid(format!(
                "OpenLineage: POST {url} answered {status}{detail}"
            )));
        }
        Ok(())
    }
}

/// `error` and its sources, joined by `: ` (each once).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Appends `line` to the file at `path`, creating it and its parent
/// directories.
fn append(path: &Path, line: &[u8]) -> Result<()> {
    let failed = |what: &str, e: std::io::Error| {
        Error::Invalid(format!(
            "OpenLineage: cannot {what} {}: {e}",
            path.display()
        ))
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| failed("create the directory of", e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| failed("open", e))?;
    file.write_all(line).map_err(|e| failed("write to", e))
}
