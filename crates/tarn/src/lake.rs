//! DataLake: the seed's entry point.

use std::path::Path;
use std::sync::Arc;

use tarn_common::config::{
    DEFAULT_COMPLIANCE_YAML, DEFAULT_CONFIG_FILE, DEFAULT_TARN_YAML, SourceConfig,
};
use tarn_common::storage::local_path;
use tarn_common::{TarnConfig, Zone};
use tarn_governance::MetadataStore;
use tarn_governance::access::PrincipalPolicy;
use tarn_ingest::{DataSpec, IngestContext, IngestionResult, IngestionStatus, Progress};
use tarn_query::{Query, QueryEngine, QueryStream, StatisticsManager};
use tarn_zones::optimize::OptimizeReport;
use tarn_zones::policy::PolicyAction;
use tarn_zones::{
    MartPlan, MartPlanner, ProcessOptions, ProcessingResult, StageStatus, ZoneContext,
};

use crate::error::{Error, Result};

/// A tarn lake: its configuration, zone roots and catalog.
#[derive(Clone)]
pub struct DataLake {
    pub(crate) config: TarnConfig,
    pub(crate) metadata: Arc<dyn MetadataStore>,
    pub(crate) query: QueryEngine,
    /// The unrestricted engine, for tarn's own reads (PII sampling,
    /// compliance assertions, schemas for lineage events).
    pub(crate) system_query: QueryEngine,
    /// Who is acting: admin unless [`DataLake::as_principal`] or
    /// [`DataLake::authenticate`] says otherwise.
    pub(crate) principal: Arc<PrincipalPolicy>,
}

impl std::fmt::Debug for DataLake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataLake")
            .field("config", &self.config.path)
            .finish()
    }
}

impl DataLake {
    /// Opens the lake described by `config`: connects to (and migrates) the
    /// metadata store and creates local zone roots that do not exist yet.
    pub async fn open(config: TarnConfig) -> Result<Self> {
        let roots = config.zone_roots()?;
        for zone in tarn_common::Zone::ALL {
            if let Some(dir) = local_path(roots.root(zone)) {
                std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
        }
        let url = config.metadata_store_url();
        if let Some(path) = url.strip_prefix("sqlite://")
            && let Some(parent) = Path::new(path.split('?').next().unwrap_or(path)).parent()
        {
            std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let metadata = tarn_governance::connect(&url).await?;
        let query = QueryEngine::new(&config, metadata.clone())?;
        let lake = Self {
            config,
            metadata,
            system_query: query.clone(),
            query,
            principal: Arc::new(PrincipalPolicy::admin()),
        };
        lake.load_erasure_horizons().await?;
        Ok(lake)
    }

    /// Writes a commented `tarn.yaml` and `compliance.yaml` with local defaults
    /// into `dir` (keeping files that exist), then opens the lake, which creates
    /// the zone roots and the SQLite metadata store. Returns the lake and whether
    /// a new `tarn.yaml` was written.
    pub async fn init(dir: &Path) -> Result<(Self, bool)> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let config_path = dir.join(DEFAULT_CONFIG_FILE);
        let created = !config_path.exists();
        if created {
            std::fs::write(&config_path, DEFAULT_TARN_YAML).map_err(io(&config_path))?;
        }
        let compliance = dir.join("compliance.yaml");
        if !compliance.exists() {
            std::fs::write(&compliance, DEFAULT_COMPLIANCE_YAML).map_err(io(&compliance))?;
        }
        let lake = Self::open(TarnConfig::load(&config_path)?).await?;
        Ok((lake, created))
    }

    /// The lake's configuration.
    pub fn config(&self) -> &TarnConfig {
        &self.config
    }

    /// The catalog.
    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.metadata
    }

    /// The query engine (its cache lives as long as the lake handle).
    pub fn query_engine(&self) -> &QueryEngine {
        &self.query
    }

    /// Runs a structured query (the seed's `lake.query_data(query)`).
    pub async fn query_data(&self, query: &Query) -> Result<QueryStream> {
        Ok(self.query.query(query).await?)
    }

    /// Runs one SQL statement over the zones (`SELECT … FROM curated.user_events`).
    pub async fn sql(&self, sql: &str) -> Result<QueryStream> {
        Ok(self.query.sql(sql).await?)
    }

    /// Table and column statistics, kept in the catalog.
    pub fn statistics(&self) -> StatisticsManager {
        StatisticsManager::new(self.query.clone())
    }

    /// A DataSpec for `dataset` from its entry in `tarn.yaml` (schema,
    /// partition key, evolution mode, source path and CSV options).
    pub fn spec_for(&self, dataset: &str) -> DataSpec {
        let mut spec = DataSpec {
            dataset: dataset.to_string(),
            ..Default::default()
        };
        if let Some(ds) = self.config.datasets.get(dataset) {
            spec.schema = ds
                .schema
                .as_ref()
                .map(|s| self.config.resolve_path(s).display().to_string());
            spec.partition_key = ds.partition_key.clone();
            spec.schema_evolution = ds.schema_evolution;
        }
        match self.config.dataset_source(dataset).map(|s| s.into_owned()) {
            Some(SourceConfig::File(src)) => {
                spec.paths = vec![self.config.resolve_path(&src.path).display().to_string()];
                spec.format = src.format.as_deref().and_then(|f| f.parse().ok());
                spec.csv = src.csv.clone();
            }
            Some(other) => spec.source = Some(other),
            None => {}
        }
        spec
    }

    /// Ingests `spec` from a source kind (the seed's `ingest_data("file", spec)`).
    pub async fn ingest_data(&self, source: &str, spec: DataSpec) -> Result<IngestionResult> {
        self.ingest_with_progress(source, spec, None).await
    }

    /// [`ingest_data`](Self::ingest_data), reporting progress.
    pub async fn ingest_with_progress(
        &self,
        source: &str,
        spec: DataSpec,
        progress: Option<Arc<dyn Progress>>,
    ) -> Result<IngestionResult> {
        let mut spec = spec;
        if !["file", "kafka", "rest", "database"].contains(&source) {
            return Err(Error::Invalid(format!(
                "unknown source kind `{source}` (expected file, kafka, rest or database)"
            )));
        }
        if spec.source.is_none()
            && source != "file"
            && let Some(configured) = self.config.dataset_source(&spec.dataset)
            && configured.kind() == source
        {
            spec.source = Some(configured.into_owned());
        }
        let given = spec.source.as_ref().map_or("file", |s| s.kind());
        if given != source {
            return Err(Error::Invalid(format!(
                "ingest_data(\"{source}\", …) needs a {source} source for dataset `{}`, \
                 but the spec has a {given} source",
                spec.dataset
            )));
        }
        self.authorize_write(Zone::Raw, &spec.dataset, "ingest")
            .await?;
        self.check_blocking(&spec.dataset, &[Zone::Raw], "ingest")
            .await?;
        let ds = self.config.datasets.get(&spec.dataset);
        let ctx = IngestContext {
            roots: self.config.zone_roots()?,
            metadata: self.metadata.clone(),
            batch_size: self.config.processing.batch_size,
            owner: ds.and_then(|d| d.owner.clone()),
            description: ds.and_then(|d| d.description.clone()),
            tags: ds.map(|d| d.tags.clone()).unwrap_or_default(),
            progress,
        };
        // Stored times keep microseconds: allow for the truncation.
        let began = chrono::Utc::now() - chrono::Duration::milliseconds(1);
        let outcome = match source {
            "file" => tarn_ingest::ingest_files(&ctx, &spec).await,
            "kafka" => tarn_ingest::ingest_kafka(&ctx, &spec).await,
            _ => tarn_ingest::ingest_pull(&ctx, &spec).await,
        };
        self.emit_ingest_run(&spec.dataset, began).await;
        let result = match outcome {
            Ok(r) => r,
            Err(e) => {
                self.audit_action(
                    "ingest",
                    format!("raw/{}", spec.dataset),
                    true,
                    None,
                    serde_json::json!({ "source": source, "error": e.to_string() }),
                )
                .await;
                return Err(e.into());
            }
        };
        let m = &result.metadata;
        self.audit_action(
            "ingest",
            format!("raw/{}", spec.dataset),
            true,
            Some(m.rows_written as i64),
            serde_json::json!({
                "source": source,
                "run_id": m.run_id,
                "status": result.status,
                "files": m.files,
                "rows_read": m.rows_read,
                "rows_quarantined": m.rows_quarantined,
                "version": m.delta_version,
            }),
        )
        .await;
        if result.status != IngestionStatus::Skipped {
            // Statistics and classification follow every write; a failure
            // here leaves the data committed and only them stale, so it is
            // not an error.
            if let Err(e) = self.statistics().refresh(Zone::Raw, &spec.dataset).await {
                tracing::warn!(dataset = %spec.dataset, "statistics not refreshed: {e}");
            }
            if let Err(e) = self.detect_pii(&spec.dataset).await {
                tracing::warn!(dataset = %spec.dataset, "PII detection failed: {e}");
            }
        }
        Ok(result)
    }

    /// Refuses a write to `zone/dataset` by a principal without INSERT on it.
    async fn authorize_write(&self, zone: Zone, dataset: &str, action: &str) -> Result<()> {
        let p = &self.principal;
        if p.holds(tarn_governance::access::Privilege::Insert, zone, dataset) {
            return Ok(());
        }
        let why = format!(
            "permission denied: `{}` lacks INSERT on {zone}/{dataset} (grant it with \
             `tarn grant insert {zone}/{dataset} --to {}`)",
            p.name, p.name
        );
        self.audit_action(
            action,
            format!("{zone}/{dataset}"),
            false,
            None,
            serde_json::json!({ "reason": why }),
        )
        .await;
        Err(Error::PermissionDenied(why))
    }

    /// The zone pipelines' view of this lake.
    pub(crate) fn zones(&self) -> Result<ZoneContext> {
        Ok(ZoneContext::new(
            self.config.clone(),
            self.metadata.clone(),
        )?)
    }

    /// [`zones`](Self::zones) with the classifications in force (reviewed
    /// and confidently detected tags too), which drive required masking.
    async fn zones_classified(&self) -> Result<ZoneContext> {
        let mut config = self.config.clone();
        for (dataset, columns) in self.effective_classifications().await? {
            if let Some(ds) = config.datasets.get_mut(&dataset) {
                ds.classifications = columns;
            }
        }
        Ok(ZoneContext::new(config, self.metadata.clone())?)
    }

    /// Promotes what is new in a dataset's raw table through the cleansed,
    /// curated and consumption zones (the seed's `process_data(location)`).
    /// `location` is a dataset name or `raw/<dataset>`.
    pub async fn process_data(&self, location: &str) -> Result<ProcessingResult> {
        self.process_with(location, ProcessOptions::default()).await
    }

    /// [`process_data`](Self::process_data) up to a zone, or from scratch.
    pub async fn process_with(
        &self,
        location: &str,
        options: ProcessOptions,
    ) -> Result<ProcessingResult> {
        let dataset = match location.split_once('/') {
            None => location,
            Some(("raw", d)) if !d.is_empty() && !d.contains('/') => d,
            Some(_) => {
                return Err(Error::Invalid(format!(
                    "`{location}`: give a dataset name or raw/<dataset>"
                )));
            }
        };
        for zone in [Zone::Cleansed, Zone::Curated] {
            self.authorize_write(zone, dataset, "process").await?;
        }
        self.check_blocking(
            dataset,
            &[Zone::Cleansed, Zone::Curated, Zone::Consumption],
            "process",
        )
        .await?;
        let planner = EnginePlanner(self.query.without_audit());
        let result =
            tarn_zones::process(&self.zones_classified().await?, &planner, dataset, options)
                .await?;
        self.emit_stage_runs(dataset, &result.stages).await;
        self.audit_action(
            "process",
            dataset,
            true,
            Some(result.stages.iter().map(|s| s.rows_out as i64).sum()),
            serde_json::json!({
                "status": result.status,
                "error": result.error,
                "stages": result.stages.iter().map(|s| serde_json::json!({
                    "stage": s.stage, "table": s.table, "status": s.status,
                    "run_id": s.run_id, "rows_in": s.rows_in, "rows_out": s.rows_out,
                    "rows_quarantined": s.rows_quarantined, "version": s.version,
                })).collect::<Vec<_>>(),
            }),
        )
        .await;
        for stage in &result.stages {
            if stage.status != StageStatus::Succeeded {
                continue;
            }
            let Some((zone, name)) = stage.table.split_once('/') else {
                continue;
            };
            let Ok(zone) = zone.parse::<Zone>() else {
                continue;
            };
            if let Err(e) = self.statistics().refresh(zone, name).await {
                tracing::warn!(table = %stage.table, "statistics not refreshed: {e}");
            }
        }
        Ok(result)
    }

    /// Enforces the zone policies (retention, vacuum); with `dry_run`, only
    /// reports what would be deleted.
    pub async fn apply_policies(&self, dry_run: bool) -> Result<Vec<PolicyAction>> {
        Ok(tarn_zones::policy::apply(&self.zones()?, dry_run).await?)
    }

    /// Compacts a table's small files, Z-ordering them by `zorder` if given.
    pub async fn optimize(
        &self,
        zone: Zone,
        dataset: &str,
        zorder: &[String],
    ) -> Result<OptimizeReport> {
        let target = self
            .config
            .datasets
            .get(dataset)
            .and_then(|d| d.curate.as_ref()?.partition.as_ref())
            .map(|p| p.target_file_mib);
        Ok(tarn_zones::optimize::optimize(&self.zones()?, zone, dataset, zorder, target).await?)
    }

    /// The quality results of a dataset's newest `runs` stage runs.
    pub async fn quality_history(
        &self,
        dataset: &str,
        runs: usize,
    ) -> Result<Vec<tarn_governance::QualityResult>> {
        Ok(self.metadata.quality_results(dataset, runs).await?)
    }
}

/// Plans mart SQL with the lake's query engine.
struct EnginePlanner(QueryEngine);

#[async_trait::async_trait]
impl MartPlanner for EnginePlanner {
    async fn plan(&self, sql: &str) -> std::result::Result<MartPlan, String> {
        let plan = self.0.plan_sql(sql).await.map_err(|e| e.to_string())?;
        let inputs = QueryEngine::tables_read(&plan)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|t| (format!("{}/{}", t.zone, t.name), t.version))
            .collect();
        let columns = tarn_query::lineage::column_lineage(&plan);
        let df = datafusion::dataframe::DataFrame::new(self.0.session().state(), plan);
        Ok(MartPlan {
            df,
            inputs,
            columns,
        })
    }
}
