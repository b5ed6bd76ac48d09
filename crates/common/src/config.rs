//! `tarn.yaml`: the typed configuration tree, its discovery and validation.
//!
//! The shape follows the seed: `storage`, `governance`, `processing`, `sources`
//! and `datasets`. `${VAR}` is expanded from the environment before parsing,
//! relative paths resolve against the directory holding the file, and every
//! mistake (unknown key, wrong type, missing file) is an error naming the file,
//! the key and the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pipeline::{
    CleanseConfig, ConsumeConfig, CurateConfig, PipelineFile, ZonePolicies, ZonePolicy,
};
use crate::storage::{Zone, ZoneRoots, resolve_location};

/// Name of the environment variable that points at the config file.
pub const CONFIG_ENV: &str = "TARN_CONFIG";
/// File name looked up in the working directory when nothing else is given.
pub const DEFAULT_CONFIG_FILE: &str = "tarn.yaml";

/// The whole of `tarn.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TarnConfig {
    /// Zone roots and object-store options.
    pub storage: StorageConfig,
    /// Metadata store and compliance rules.
    pub governance: GovernanceConfig,
    /// Batch size and parallelism.
    #[serde(default)]
    pub processing: ProcessingConfig,
    /// Query engine: result cache bounds.
    #[serde(default)]
    pub query: QueryConfig,
    /// Named connections: file locations, Kafka brokers, REST APIs, databases.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// Per-zone policies (retention, vacuum, schema evolution, masking).
    #[serde(default)]
    pub policies: ZonePolicies,
    /// Per-dataset settings.
    #[serde(default)]
    pub datasets: BTreeMap<String, DatasetConfig>,
    /// Directory that holds the config file; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file this config was read from, if any.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

/// `storage:` zone roots (local paths or URLs such as `s3://bucket/raw`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Root of the raw zone.
    pub raw_zone: String,
    /// Root of the cleansed zone.
    pub cleansed_zone: String,
    /// Root of the curated zone.
    pub curated_zone: String,
    /// Root of the consumption zone.
    pub consumption_zone: String,
    /// Object-store options (endpoint, region, credentials, `conditional_put`, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// `governance:` where the catalog lives and which compliance rules apply.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceConfig {
    /// `sqlite://path` (default, embedded) or `postgresql://user@host/db`.
    pub metadata_store: String,
    /// Path of `compliance.yaml`.
    #[serde(default)]
    pub compliance_rules: Option<String>,
    /// Salt of the `hash` and `tokenize` masks (env `TARN_MASKING_SALT` overrides it).
    #[serde(default)]
    pub masking_salt: Option<String>,
    /// Where every job run's OpenLineage events go.
    #[serde(default)]
    pub openlineage: OpenLineageConfig,
}

/// `governance.openlineage:` where OpenLineage RunEvents are sent. The
/// standard `OPENLINEAGE_URL` and `OPENLINEAGE_NAMESPACE` variables override
/// `url` and `namespace`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenLineageConfig {
    /// A JSON Lines file events are appended to (relative to tarn.yaml).
    #[serde(default)]
    pub file: Option<String>,
    /// A Marquez-compatible endpoint, e.g. `http://127.0.0.1:5000`.
    #[serde(default)]
    pub url: Option<String>,
    /// The namespace of jobs and datasets (default `tarn`).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `processing:` batch size and threads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessingConfig {
    /// Rows per Arrow batch read from a source.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Worker threads for CPU-bound work.
    #[serde(default = "default_threads")]
    pub processing_threads: usize,
}

fn default_batch_size() -> usize {
    8192
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        Self {
            batch_size: default_batch_size(),
            processing_threads: default_threads(),
        }
    }
}

/// `query:` the query engine's result cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// Bytes of query results the in-process cache may hold (LRU); 0 turns
    /// the cache off.
    #[serde(default = "default_cache_bytes")]
    pub cache_max_bytes: usize,
    /// The largest single result that is cached.
    #[serde(default = "default_cache_entry_bytes")]
    pub cache_max_entry_bytes: usize,
}

fn default_cache_bytes() -> usize {
    256 << 20
}

fn default_cache_entry_bytes() -> usize {
    32 << 20
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            cache_max_bytes: default_cache_bytes(),
            cache_max_entry_bytes: default_cache_entry_bytes(),
        }
    }
}

/// A named source under `sources:` (or inline under a dataset's `source:`),
/// told apart by `type:`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// Files on a local path or object store.
    File(FileSourceConfig),
    /// Kafka topics read through a consumer group.
    Kafka(KafkaSourceConfig),
    /// A JSON HTTP API, page by page.
    Rest(RestSourceConfig),
    /// A table or query of PostgreSQL, MySQL/MariaDB or SQLite.
    Database(DatabaseSourceConfig),
}

impl SourceConfig {
    /// The connector kind: `file`, `kafka`, `rest` or `database`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::File(_) => "file",
            SourceConfig::Kafka(_) => "kafka",
            SourceConfig::Rest(_) => "rest",
            SourceConfig::Database(_) => "database",
        }
    }
}

/// Kafka: brokers, topics, consumer group, message format and batching.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Topics that feed the dataset; the dataset's name when empty.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Consumer group id (default `tarn-<dataset>`).
    #[serde(default)]
    pub group: Option<String>,
    /// `json` (default), `avro` (binary datums of the dataset schema) or
    /// `confluent-avro` (magic byte and schema id, resolved through `schema_registry`).
    #[serde(default)]
    pub format: Option<String>,
    /// Schema-registry base URL, for `confluent-avro`.
    #[serde(default)]
    pub schema_registry: Option<String>,
    /// Messages per Delta commit (default 100000).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Longest a message waits before its batch is committed, in milliseconds (default 5000).
    #[serde(default)]
    pub max_latency_ms: Option<u64>,
    /// Extra librdkafka consumer properties (for example `security.protocol`).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_brokers() -> String {
    "127.0.0.1:9092".into()
}

/// A REST API: where the records are, how to page, authenticate and resume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestSourceConfig {
    /// The first page's URL.
    pub url: String,
    /// Dotted path to the records array in each response (`data`, `result.items`);
    /// the response itself when absent.
    #[serde(default)]
    pub records_path: Option<String>,
    /// `none`, `page[:PARAM]`, `offset[:PARAM[:LIMIT_PARAM]]`, `cursor:FIELD[:PARAM]` or `link`.
    #[serde(default)]
    pub paginate: Option<String>,
    /// Records per page requested with page or offset pagination.
    #[serde(default)]
    pub page_size: Option<u32>,
    /// `bearer:env:VAR`, `basic:env:USER_VAR:env:PASSWORD_VAR` or `header:NAME:env:VAR`.
    #[serde(default)]
    pub auth: Option<String>,
    /// Record field (integer or timestamp) that orders changes; the highest value
    /// seen is committed, and the next run takes only records above it.
    #[serde(default)]
    pub cursor_field: Option<String>,
    /// Query parameter that sends the committed cursor value to the API.
    #[serde(default)]
    pub cursor_param: Option<String>,
    /// Most requests per second (default: unlimited).
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// Retries of a request that got 429, 5xx or a network error (default 5).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// A database table or query, read in full or above a watermark.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSourceConfig {
    /// `postgresql://…`, `mysql://…` (MariaDB too) or `sqlite://path`.
    pub url: String,
    /// Table to read (`schema.table` allowed); or give `query`.
    #[serde(default)]
    pub table: Option<String>,
    /// A SELECT to read instead of a table.
    #[serde(default)]
    pub query: Option<String>,
    /// Column (integer or timestamp) that grows with every insert and update;
    /// its highest value is committed and the next run reads only rows above it.
    #[serde(default)]
    pub watermark: Option<String>,
}

/// Where files come from and how to read them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// A file, a directory or a glob such as `incoming/*.csv`.
    pub path: String,
    /// `csv`, `ndjson`, `json`, `parquet` or `avro`; inferred from the extension when absent.
    #[serde(default)]
    pub format: Option<String>,
    /// CSV options.
    #[serde(default)]
    pub csv: CsvOptions,
}

/// CSV dialect.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CsvOptions {
    /// Whether the first line names the columns.
    #[serde(default = "yes")]
    pub header: bool,
    /// Field delimiter (one byte).
    #[serde(default = "comma")]
    pub delimiter: char,
    /// Quote character (one byte).
    #[serde(default = "dquote")]
    pub quote: char,
    /// A value that means null (the empty field is always null).
    #[serde(default)]
    pub null_marker: Option<String>,
}

fn yes() -> bool {
    true
}
fn comma() -> char {
    ','
}
fn dquote() -> char {
    '"'
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            header: true,
            delimiter: ',',
            quote: '"',
            null_marker: None,
        }
    }
}

/// What happens to a record whose columns differ from the pinned schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaEvolution {
    /// Records with new columns or changed types are quarantined.
    #[default]
    Strict,
    /// New columns are added as nullable and a new schema version is recorded.
    Additive,
}

impl std::str::FromStr for SchemaEvolution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "strict" => Ok(Self::Strict),
            "additive" => Ok(Self::Additive),
            other => Err(format!(
                "unknown schema evolution mode `{other}` (expected strict or additive)"
            )),
        }
    }
}

/// One entry under `datasets:`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Path of the Avro `.avsc`; without one the schema is inferred on first ingest and pinned.
    #[serde(default)]
    pub schema: Option<String>,
    /// Timestamp column whose date partitions the raw table.
    #[serde(default)]
    pub partition_key: Option<String>,
    /// `strict` (default) or `additive`.
    #[serde(default)]
    pub schema_evolution: SchemaEvolution,
    /// Owning team or person.
    #[serde(default)]
    pub owner: Option<String>,
    /// What the dataset holds.
    #[serde(default)]
    pub description: Option<String>,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Where the dataset's files come from: inline, or the name of an entry in `sources:`.
    #[serde(default)]
    pub source: Option<DatasetSource>,
    /// Column classifications such as `email: pii`; they drive required masking.
    #[serde(default)]
    pub classifications: BTreeMap<String, String>,
    /// Raw → cleansed: standardization, deduplication, masking.
    #[serde(default)]
    pub cleanse: Option<CleanseConfig>,
    /// Cleansed → curated: expectations, enrichment, partitioning.
    #[serde(default)]
    pub curate: Option<CurateConfig>,
    /// Curated → consumption: the marts.
    #[serde(default)]
    pub consume: Option<ConsumeConfig>,
    /// A YAML file holding this dataset's `cleanse`, `curate` and `consume`
    /// sections instead.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Overrides of the zone policies for this dataset.
    #[serde(default)]
    pub policies: ZonePolicies,
}

/// A dataset's source: a reference to `sources:`, an inline source with a
/// `type:`, or an inline file source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DatasetSource {
    /// Name of an entry in `sources:`.
    Named(String),
    /// Inline source of any kind.
    Typed(SourceConfig),
    /// Inline file source.
    File(FileSourceConfig),
}

impl TarnConfig {
    /// Finds and loads the config: `explicit` (from `--config`), then `$TARN_CONFIG`,
    /// then `./tarn.yaml`.
    pub fn discover(explicit: Option<&Path>) -> Result<Self> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => match std::env::var_os(CONFIG_ENV) {
                Some(p) if !p.is_empty() => PathBuf::from(p),
                _ => PathBuf::from(DEFAULT_CONFIG_FILE),
            },
        };
        if !path.exists() {
            return Err(Error::Config(format!(
                "config file {} not found (looked at --config, then ${CONFIG_ENV}, then ./{DEFAULT_CONFIG_FILE}); \
                 run `tarn init` to create one",
                path.display()
            )));
        }
        Self::load(&path)
    }

    /// Reads, expands and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::from_yaml(&text, &path, &base_dir)
    }

    /// Parses config text. `file` names the source in errors; relative paths
    /// resolve against `base_dir`.
    pub fn from_yaml(text: &str, file: &Path, base_dir: &Path) -> Result<Self> {
        Self::from_yaml_with_env(text, file, base_dir, &|k| std::env::var(k).ok())
    }

    /// [`from_yaml`](Self::from_yaml) with an explicit environment lookup.
    pub fn from_yaml_with_env(
        text: &str,
        file: &Path,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let shown = file.display().to_string();
        let expanded = expand_env(text, &shown, env)?;
        let de = serde_yaml_ng::Deserializer::from_str(&expanded);
        let mut config: TarnConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.inner();
            let at = inner
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            let msg = strip_location(inner);
            // serde_yaml_ng often starts with (part of) the key path: say it once.
            let msg = match msg.split_once(": ") {
                _ if key == "." => msg.clone(),
                Some((head, rest)) if key.starts_with(head) => format!("{key}: {rest}"),
                _ => format!("{key}: {msg}"),
            };
            Error::Config(format!("{shown}{at}: {msg}"))
        })?;
        config.base_dir = base_dir.to_path_buf();
        config.path = Some(file.to_path_buf());
        config.apply_env_overrides(env)?;
        config.load_pipeline_files(env)?;
        config.validate(&expanded, &shown)?;
        Ok(config)
    }

    /// `TARN_PROCESSING_BATCH_SIZE`, `TARN_PROCESSING_PROCESSING_THREADS` and
    /// `TARN_QUERY_CACHE_MAX_(ENTRY_)BYTES` override `processing.*` and
    /// `query.*`, following the dotted-key convention.
    fn apply_env_overrides(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        for (var, slot) in [
            (
                "TARN_PROCESSING_BATCH_SIZE",
                &mut self.processing.batch_size,
            ),
            (
                "TARN_PROCESSING_PROCESSING_THREADS",
                &mut self.processing.processing_threads,
            ),
            (
                "TARN_QUERY_CACHE_MAX_BYTES",
                &mut self.query.cache_max_bytes,
            ),
            (
                "TARN_QUERY_CACHE_MAX_ENTRY_BYTES",
                &mut self.query.cache_max_entry_bytes,
            ),
        ] {
            if let Some(v) = env(var) {
                *slot = v.parse().map_err(|_| {
                    Error::Config(format!("{var}={v}: expected a positive integer"))
                })?;
            }
        }
        Ok(())
    }

    /// Reads each `datasets.NAME.pipeline` file into the dataset's sections; a
    /// section may be given inline or in the file, not both.
    fn load_pipeline_files(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        let base = self.base_dir.clone();
        for (name, ds) in &mut self.datasets {
            let Some(file) = &ds.pipeline else { continue };
            let path = if Path::new(file).is_absolute() {
                PathBuf::from(file)
            } else {
                base.join(file)
            };
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Error::Config(format!(
                    "datasets.{name}.pipeline: cannot read {shown}: {e}"
                ))
            })?;
            let expanded = expand_env(&text, &shown, env)?;
            let de = serde_yaml_ng::Deserializer::from_str(&expanded);
            let sections: PipelineFile = serde_path_to_error::deserialize(de).map_err(|e| {
                let at = e
                    .inner()
                    .location()
                    .map(|l| format!(":{}:{}", l.line(), l.column()))
                    .unwrap_or_default();
                Error::Config(format!(
                    "{shown}{at}: {}: {}",
                    e.path(),
                    strip_location(e.inner())
                ))
            })?;
            for (section, inline, from_file) in [
                ("cleanse", ds.cleanse.is_some(), sections.cleanse.is_some()),
                ("curate", ds.curate.is_some(), sections.curate.is_some()),
                ("consume", ds.consume.is_some(), sections.consume.is_some()),
            ] {
                if inline && from_file {
                    return Err(Error::Config(format!(
                        "datasets.{name}: `{section}` is given both inline and in {shown}; keep one"
                    )));
                }
            }
            ds.cleanse = ds.cleanse.take().or(sections.cleanse);
            ds.curate = ds.curate.take().or(sections.curate);
            ds.consume = ds.consume.take().or(sections.consume);
        }
        Ok(())
    }

    /// The effective policy of `zone` for `dataset`: the zone's, with the
    /// dataset's overrides.
    pub fn policy(&self, zone: Zone, dataset: &str) -> ZonePolicy {
        let base = self.policies.zone(zone);
        match self.datasets.get(dataset) {
            Some(ds) => base.overridden_by(ds.policies.zone(zone)),
            None => base.clone(),
        }
    }

    /// The masking salt: `TARN_MASKING_SALT`, else `governance.masking_salt`.
    pub fn masking_salt(&self) -> Option<String> {
        std::env::var("TARN_MASKING_SALT")
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| self.governance.masking_salt.clone())
    }

    fn validate(&self, text: &str, shown: &str) -> Result<()> {
        let at = |keys: &[&str]| {
            line_of(text, keys)
                .map(|l| format!("{shown}:{l}"))
                .unwrap_or_else(|| shown.to_string())
        };
        if self.processing.batch_size == 0 {
            return Err(Error::Config(format!(
                "{}: processing.batch_size: must be at least 1",
                at(&["processing", "batch_size"])
            )));
        }
        if let Some(rules) = &self.governance.compliance_rules {
            let p = self.resolve_path(rules);
            if !p.exists() {
                return Err(Error::Config(format!(
                    "{}: governance.compliance_rules: file not found: {}",
                    at(&["governance", "compliance_rules"]),
                    p.display()
                )));
            }
        }
        if self.policies.raw.retention.is_some() {
            return Err(Error::Config(format!(
                "{}: policies.raw.retention: the raw zone is immutable; only erasure deletes \
                 from it (set retention on cleansed or curated)",
                at(&["policies", "raw", "retention"])
            )));
        }
        for (name, ds) in &self.datasets {
            if ds.policies.raw.retention.is_some() {
                return Err(Error::Config(format!(
                    "{}: datasets.{name}.policies.raw.retention: the raw zone is immutable; \
                     only erasure deletes from it",
                    at(&["datasets", name, "policies"])
                )));
            }
            if let Some(schema) = &ds.schema {
                let p = self.resolve_path(schema);
                if !p.exists() {
                    return Err(Error::Config(format!(
                        "{}: datasets.{name}.schema: file not found: {}",
                        at(&["datasets", name, "schema"]),
                        p.display()
                    )));
                }
            }
            if let Some(DatasetSource::Named(src)) = &ds.source
                && !self.sources.contains_key(src)
            {
                return Err(Error::Config(format!(
                    "{}: datasets.{name}.source: no source named `{src}` under sources:",
                    at(&["datasets", name, "source"])
                )));
            }
        }
        self.zone_roots()?;
        Ok(())
    }

    /// Resolves a path from the config against the config's directory.
    pub fn resolve_path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The zone roots as URLs, with the object-store options.
    pub fn zone_roots(&self) -> Result<ZoneRoots> {
        let s = &self.storage;
        Ok(ZoneRoots {
            raw: resolve_location(&s.raw_zone, &self.base_dir)?,
            cleansed: resolve_location(&s.cleansed_zone, &self.base_dir)?,
            curated: resolve_location(&s.curated_zone, &self.base_dir)?,
            consumption: resolve_location(&s.consumption_zone, &self.base_dir)?,
            options: s.options.clone().into_iter().collect(),
        })
    }

    /// The metadata store URL with a relative SQLite path made absolute.
    pub fn metadata_store_url(&self) -> String {
        let url = &self.governance.metadata_store;
        match url.strip_prefix("sqlite://") {
            Some(rest) if !rest.starts_with('/') && !rest.starts_with(':') => {
                let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
                let abs = self.base_dir.join(path);
                let q = if query.is_empty() {
                    String::new()
                } else {
                    format!("?{query}")
                };
                format!("sqlite://{}{q}", abs.display())
            }
            _ => url.clone(),
        }
    }

    /// The file source of a dataset, following a named reference into `sources:`.
    pub fn dataset_file_source(&self, dataset: &str) -> Option<&FileSourceConfig> {
        match self.datasets.get(dataset)?.source.as_ref()? {
            DatasetSource::File(f) | DatasetSource::Typed(SourceConfig::File(f)) => Some(f),
            DatasetSource::Named(n) => match self.sources.get(n)? {
                SourceConfig::File(f) => Some(f),
                _ => None,
            },
            DatasetSource::Typed(_) => None,
        }
    }

    /// A dataset's source of any kind, following a named reference into `sources:`.
    pub fn dataset_source(&self, dataset: &str) -> Option<std::borrow::Cow<'_, SourceConfig>> {
        use std::borrow::Cow;
        match self.datasets.get(dataset)?.source.as_ref()? {
            DatasetSource::File(f) => Some(Cow::Owned(SourceConfig::File(f.clone()))),
            DatasetSource::Typed(s) => Some(Cow::Borrowed(s)),
            DatasetSource::Named(n) => self.sources.get(n).map(Cow::Borrowed),
        }
    }

    /// A config for a lake in `dir` with the local defaults that `tarn init` writes.
    pub fn local_defaults(dir: &Path) -> Result<Self> {
        let file = dir.join(DEFAULT_CONFIG_FILE);
        Self::from_yaml(DEFAULT_TARN_YAML, &file, dir)
    }
}

/// serde_yaml_ng appends " at line L column C"; we print the location up front instead.
fn strip_location(e: &serde_yaml_ng::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Expands `${VAR}` from the environment. Comment lines are left alone; an unset
/// variable is an error naming the file and line.
fn expand_env(text: &str, shown: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') || !line.contains("${") {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(Error::Config(format!(
                    "{shown}:{}: unterminated `${{` in `{}`",
                    i + 1,
                    line.trim_end()
                )));
            };
            let var = &after[..end];
            let value = env(var).ok_or_else(|| {
                Error::Config(format!(
                    "{shown}:{}: environment variable `{var}` is not set",
                    i + 1
                ))
            })?;
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

/// The 1-based line where the block-style key path `keys` is set, if found.
fn line_of(text: &str, keys: &[&str]) -> Option<usize> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let Some((key, _)) = trimmed.split_once(':') else {
            continue;
        };
        stack.retain(|(d, _)| *d < indent);
        stack.push((indent, key.trim().trim_matches('"').to_string()));
        if stack.len() == keys.len() && stack.iter().zip(keys).all(|((_, k), want)| k == want) {
            return Some(i + 1);
        }
    }
    None
}

/// The commented `tarn.yaml` that `tarn init` writes.
pub const DEFAULT_TARN_YAML: &str = r#"# tarn.yaml: the configuration of one tarn lake.
# Relative paths resolve against the directory of this file.
# ${VAR} is replaced by the environment variable VAR, so secrets stay out of files.

storage:
  # One root per zone: a local path, or an object-store URL such as s3://data-lake/raw.
  raw_zone: ./lake/raw
  cleansed_zone: ./lake/cleansed
  curated_zone: ./lake/curated
  consumption_zone: ./lake/consumption
  # Object-store options, passed to every zone. For an S3-compatible server, e.g.:
  #   endpoint: http://127.0.0.1:9000
  #   allow_http: "true"
  #   region: us-east-1
  #   access_key_id: ${AWS_ACCESS_KEY_ID}
  #   secret_access_key: ${AWS_SECRET_ACCESS_KEY}
  #   conditional_put: etag
  options: {}

governance:
  # sqlite://PATH (embedded, the default) or postgresql://user@host:5432/db
  metadata_store: sqlite://./lake/metadata.db
  compliance_rules: compliance.yaml
  # Salt of the hash/tokenize masks; keep it out of the file (env TARN_MASKING_SALT overrides).
  # masking_salt: ${MY_MASKING_SALT}

processing:
  # Rows per batch read from a source (env: TARN_PROCESSING_BATCH_SIZE).
  batch_size: 8192
  # Threads for CPU-bound work (env: TARN_PROCESSING_PROCESSING_THREADS).
  processing_threads: 2

query:
  # Bytes of query results cached in process (LRU); 0 turns the cache off
  # (env: TARN_QUERY_CACHE_MAX_BYTES).
  cache_max_bytes: 268435456
  # The largest single result that is cached (env: TARN_QUERY_CACHE_MAX_ENTRY_BYTES).
  cache_max_entry_bytes: 33554432

# Named connections that datasets refer to by name.
sources: {}
#  landing:
#    type: file
#    path: incoming/*.csv
#    format: csv              # csv | ndjson | json | parquet | avro (default: from the extension)
#    csv: { header: true, delimiter: ",", quote: "\"", null_marker: "NULL" }
#  clickstream:
#    type: kafka
#    brokers: 127.0.0.1:9092
#    topics: [user_events]
#    group: tarn-user-events
#    format: json              # json | avro | confluent-avro (with schema_registry: URL)
#    batch_size: 100000        # messages per Delta commit
#    max_latency_ms: 5000      # or commit after this long
#  tickets_api:
#    type: rest
#    url: https://api.example.com/tickets
#    records_path: data
#    paginate: cursor:next_cursor   # page[:P] | offset[:P[:LIMIT_P]] | cursor:FIELD[:P] | link
#    auth: bearer:env:TICKETS_TOKEN # basic:env:USER:env:PASSWORD | header:NAME:env:VAR
#    cursor_field: updated_at
#    rate_limit: 5             # requests per second
#  shop_db:
#    type: database
#    url: postgresql://app@127.0.0.1:5432/shop   # mysql://… | sqlite://shop.db
#    table: public.orders      # or query: SELECT …
#    watermark: updated_at

# Per-zone policies; a dataset may override them under its own `policies:`.
policies: {}
#  cleansed: { required_masking: [pii] }          # classified columns must be masked by cleanse
#  curated: { retention: { column: timestamp, days: 365 }, vacuum_hours: 168 }
#  (raw is immutable: no retention there; `tarn policy apply [--dry-run]` enforces the rest)

# One entry per dataset.
datasets: {}
#  user_events:
#    schema: schemas/user_events.avsc   # omit to infer on first ingest and pin it
#    partition_key: timestamp           # raw table partitioned by this column's date
#    schema_evolution: strict           # strict: quarantine new columns; additive: add them
#    owner: data-platform
#    description: Clickstream events from the web shop
#    tags: [events, web]
#    source: landing                    # or inline: { path: incoming/*.csv, format: csv }
#    classifications: { email: pii }
#    # `tarn process` runs these (see examples/user_events/tarn.yaml for every setting):
#    cleanse:                           # raw -> cleansed
#      trim: [country]
#      case: { country: upper }
#      cast: { amount: "DECIMAL(10,2)" }
#      dedup: { keys: [event_id], order_by: _ingested_at }
#      mask: { email: hash }
#    curate:                            # cleansed -> curated
#      expectations:
#        - { name: amount_range, between: { column: amount, min: 0 }, severity: quarantine }
#      lookups: [{ dataset: countries, key: country, columns: [country_name] }]
#      partition: { by: day }
#    consume:                           # curated -> consumption
#      marts:
#        daily: SELECT _partition_date AS day, count(*) AS events FROM curated.user_events GROUP BY 1
"#;

/// The commented `compliance.yaml` that `tarn init` writes.
pub const DEFAULT_COMPLIANCE_YAML: &str = r#"# compliance.yaml: the lake's compliance rules, reported by
# `tarn compliance check`; a `blocking: true` rule that fails stops the
# dataset's ingest (rules about raw) or promotion (the other zones).
# No rules are active by default. Kinds:
#
#  - name: documented
#    kind: required_metadata            # per zone: owner, description, classification
#    zones: [cleansed, curated]
#    fields: [owner, description]
#  - name: pii-masked
#    kind: pii_masked                   # masked/dropped by cleanse outside raw ...
#    unless_role: pii_reader            # ... and redacted in queries without this role
#    blocking: true
#  - name: pii-retention
#    kind: retention                    # cleansed/curated retention per classification
#    classification: pii
#    max_days: 1095
#  - name: restricted-stays-raw
#    kind: allowed_zones
#    classification: restricted
#    zones: [raw]
#  - name: no-negative-amounts
#    kind: sql                          # passes on no row, or 0 / false / null
#    sql: SELECT count(*) FROM curated.orders WHERE amount < 0
rules: []
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_env(text: &str, vars: &[(&str, &str)]) -> Result<TarnConfig> {
        let env = |k: &str| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        };
        TarnConfig::from_yaml_with_env(text, Path::new("tarn.yaml"), Path::new("/lake"), &env)
    }

    fn parse(text: &str) -> Result<TarnConfig> {
        parse_env(text, &[])
    }

    const MINIMAL: &str = "storage:\n  raw_zone: ./r\n  cleansed_zone: ./c\n  curated_zone: ./u\n  consumption_zone: s3://b/x\ngovernance:\n  metadata_store: sqlite://./m.db\n";

    #[test]
    fn connector_sources_named_and_inline() {
        let text = format!(
            "{MINIMAL}sources:\n  clicks:\n    type: kafka\n    brokers: b:9092\n    topics: [a, b]\n    format: avro\n  api:\n    type: rest\n    url: http://x/t\n    paginate: link\n    headers: {{X-A: '1'}}\ndatasets:\n  ev:\n    source: clicks\n  orders:\n    source:\n      type: database\n      url: sqlite://s.db\n      table: orders\n      watermark: updated_at\n  files:\n    source:\n      path: in/*.csv\n"
        );
        let c = parse(&text).unwrap();
        let Some(SourceConfig::Kafka(k)) = c.dataset_source("ev").map(|s| s.into_owned()) else {
            panic!("ev has a kafka source");
        };
        assert_eq!((k.brokers.as_str(), k.topics.len()), ("b:9092", 2));
        assert_eq!(k.format.as_deref(), Some("avro"));
        let orders = c.dataset_source("orders").unwrap();
        assert_eq!(orders.kind(), "database");
        assert_eq!(c.dataset_source("files").unwrap().kind(), "file");
        assert_eq!(c.dataset_file_source("files").unwrap().path, "in/*.csv");
        assert!(c.dataset_file_source("ev").is_none());
        let SourceConfig::Rest(r) = &c.sources["api"] else {
            panic!("api is a rest source");
        };
        assert_eq!(r.headers["X-A"], "1");

        let bad = format!("{MINIMAL}sources:\n  k:\n    type: kafka\n    topic: x\n");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("topic"), "{e}");
    }

    #[test]
    fn defaults_parse_and_resolve_relative_paths() {
        let c = TarnConfig::from_yaml(
            DEFAULT_TARN_YAML,
            Path::new("/x/tarn.yaml"),
            Path::new("/x"),
        )
        .unwrap_err();
        // compliance.yaml does not exist under /x: a missing file names file, key and line.
        let msg = c.to_string();
        assert!(msg.contains("/x/tarn.yaml:23"), "{msg}");
        assert!(msg.contains("governance.compliance_rules"), "{msg}");

        let c = parse(MINIMAL).unwrap();
        let roots = c.zone_roots().unwrap();
        assert_eq!(roots.raw.as_str(), "file:///lake/r");
        assert_eq!(roots.consumption.as_str(), "s3://b/x");
        assert_eq!(c.metadata_store_url(), "sqlite:///lake/./m.db");
        assert_eq!(c.processing.batch_size, 8192);
    }

    #[test]
    fn pipelines_policies_and_their_mistakes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ev.yaml"),
            "curate:\n  derive: { big: \"amount > 10\" }\n",
        )
        .unwrap();
        let base = format!(
            "{MINIMAL}policies:\n  curated: {{ retention: {{ column: ts, days: 30 }}, vacuum_hours: 1 }}\n"
        );
        let text = format!(
            "{base}datasets:\n  ev:\n    pipeline: ev.yaml\n    cleanse: {{ trim: [a] }}\n    policies:\n      curated: {{ vacuum_hours: 9 }}\n"
        );
        let c = TarnConfig::from_yaml(&text, &dir.path().join("tarn.yaml"), dir.path()).unwrap();
        let ev = &c.datasets["ev"];
        assert_eq!(ev.cleanse.as_ref().unwrap().trim, ["a"]);
        assert_eq!(ev.curate.as_ref().unwrap().derive["big"], "amount > 10");
        let policy = c.policy(Zone::Curated, "ev");
        assert_eq!(policy.vacuum_hours, Some(9), "the dataset overrides");
        assert_eq!(policy.retention.unwrap().days, 30, "the rest is the zone's");

        let both = format!(
            "{base}datasets:\n  ev:\n    pipeline: ev.yaml\n    curate: {{ derive: {{ x: \"1\" }} }}\n"
        );
        let err = TarnConfig::from_yaml(&both, &dir.path().join("tarn.yaml"), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("both inline and in"), "{err}");

        let raw =
            format!("{MINIMAL}policies:\n  raw: {{ retention: {{ column: ts, days: 1 }} }}\n");
        let err = parse(&raw).unwrap_err().to_string();
        assert!(err.contains("raw zone is immutable"), "{err}");
    }

    #[test]
    fn unknown_key_names_file_key_and_line() {
        let text = format!("{MINIMAL}processing:\n  batch_size: 10\n  bach_size: 3\n");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.starts_with("tarn.yaml:10:"), "{msg}");
        assert!(
            msg.contains(": processing.bach_size: unknown field `bach_size`"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_type_names_file_key_and_line() {
        let text = format!("{MINIMAL}processing:\n  batch_size: lots\n");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.starts_with("tarn.yaml:9:"), "{msg}");
        assert!(msg.contains("processing.batch_size"), "{msg}");
        assert!(msg.contains("invalid type"), "{msg}");
    }

    #[test]
    fn missing_schema_file_names_key_and_line() {
        let text = format!("{MINIMAL}datasets:\n  ev:\n    schema: nope.avsc\n");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.contains("tarn.yaml:10"), "{msg}");
        assert!(msg.contains("datasets.ev.schema"), "{msg}");
        assert!(msg.contains("/lake/nope.avsc"), "{msg}");
    }

    #[test]
    fn env_vars_are_expanded_and_unset_ones_are_errors() {
        let vars = [("ENDPOINT", "http://127.0.0.1:9")];
        let text = MINIMAL.replace(
            "  consumption_zone: s3://b/x\n",
            "  consumption_zone: s3://b/x\n  options:\n    endpoint: ${ENDPOINT}\n",
        );
        let c = parse_env(&text, &vars).unwrap();
        assert_eq!(c.storage.options["endpoint"], "http://127.0.0.1:9");

        let msg = parse_env(&text.replace("ENDPOINT}", "TARN_TEST_CFG_UNSET}"), &vars)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("tarn.yaml:7"), "{msg}");
        assert!(msg.contains("TARN_TEST_CFG_UNSET"), "{msg}");
    }

    #[test]
    fn env_override_of_processing_keys() {
        let c = parse_env(
            MINIMAL,
            &[
                ("TARN_PROCESSING_PROCESSING_THREADS", "3"),
                ("TARN_QUERY_CACHE_MAX_BYTES", "1024"),
            ],
        )
        .unwrap();
        assert_eq!(c.processing.processing_threads, 3);
        assert_eq!(c.query.cache_max_bytes, 1024);
        assert_eq!(c.query.cache_max_entry_bytes, 32 << 20);
        let msg = parse_env(MINIMAL, &[("TARN_PROCESSING_BATCH_SIZE", "many")])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("TARN_PROCESSING_BATCH_SIZE"), "{msg}");
    }
}
