//! What every stage shares: its session, its run record in the catalog, its
//! lineage fact, and the StageResult it reports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use datafusion::dataframe::DataFrame;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use deltalake::delta_datafusion::create_session_state_with_spill_config;
use tarn_common::{TarnConfig, Zone, ZoneRoots};
use tarn_governance::{
    ColumnLineage, DatasetRecord, IngestionRun, LineageFact, LineageTable, MetadataStore, RunStatus,
};
use url::Url;

use crate::error::{Context, Error, Result};
use crate::result::{StageResult, StageStatus};
use crate::table;

/// Memory a stage's plans may hold before they spill to disk.
pub const MEMORY_LIMIT: usize = 2 << 30;

/// What a stage needs from the lake.
#[derive(Clone)]
pub struct ZoneContext {
    /// The lake's configuration.
    pub config: TarnConfig,
    /// Zone roots.
    pub roots: ZoneRoots,
    /// The catalog.
    pub metadata: Arc<dyn MetadataStore>,
}

impl ZoneContext {
    /// The context of the lake configured by `config`.
    pub fn new(config: TarnConfig, metadata: Arc<dyn MetadataStore>) -> Result<Self> {
        let roots = config
            .zone_roots()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(Self {
            config,
            roots,
            metadata,
        })
    }

    /// A fresh session for one stage's plans: delta-rs's planner (its writes
    /// need it), a memory pool that makes sorts, windows and joins spill to
    /// disk past [`MEMORY_LIMIT`], and tarn's functions.
    pub fn session(&self) -> SessionContext {
        let mut state = create_session_state_with_spill_config(Some(MEMORY_LIMIT), None);
        let batch_size = self.config.processing.batch_size.max(1).to_string();
        // A positive integer is always a valid batch size.
        let _ = state
            .config_mut()
            .options_mut()
            .set("datafusion.execution.batch_size", &batch_size);
        let ctx = SessionContext::new_with_state(state);
        ctx.register_udf(crate::udf::parse_timestamp_udf());
        ctx
    }

    /// The URL of `dataset`'s table in `zone`.
    pub fn table_url(&self, zone: Zone, dataset: &str) -> Url {
        self.roots.table_url(zone, dataset)
    }

    /// The URL of the quarantine table `zone` keeps for `dataset`.
    pub fn quarantine_url(&self, zone: Zone, dataset: &str) -> Url {
        self.roots
            .table_url(zone, &format!("_quarantine/{dataset}"))
    }
}

/// Where a stage resumes.
pub(crate) struct Resume {
    /// The stage's table, if it exists.
    pub(crate) target: Option<DeltaTable>,
    /// The upstream version it recorded (none with a full refresh).
    pub(crate) last: Option<i64>,
    /// The stage's quarantine table, if it exists.
    pub(crate) quarantine: Option<DeltaTable>,
    /// The upstream version the quarantine recorded (none with a full refresh).
    pub(crate) q_last: Option<i64>,
    /// The upstream, at the version this pass processes up to.
    pub(crate) upstream: DeltaTable,
    /// Whether the upstream has more for another pass.
    pub(crate) more: bool,
}

/// Loads what a stage needs to know where it stands. A run that died between
/// its quarantine commit and its table commit is finished first, range-exact
/// (the upstream as of the version the quarantine recorded), so that its
/// quarantined rows are neither lost nor written twice; the caller then runs
/// another pass for the rest.
pub(crate) async fn resume(
    ctx: &ZoneContext,
    zone: Zone,
    dataset: &str,
    app: &str,
    upstream_url: &Url,
    upstream: DeltaTable,
    full_refresh: bool,
) -> Result<Resume> {
    let options = &ctx.roots.options;
    let recorded = |t: Option<DeltaTable>| async move {
        let v = match (&t, full_refresh) {
            (Some(t), false) => table::consumed_version(t, app).await?,
            _ => None,
        };
        Ok::<_, Error>((t, v))
    };
    let (target, last) =
        recorded(table::load(&ctx.table_url(zone, dataset), options).await?).await?;
    let (quarantine, q_last) =
        recorded(table::load(&ctx.quarantine_url(zone, dataset), options).await?).await?;
    let (upstream, more) = match q_last {
        Some(q) if Some(q) > last && q < table::version(&upstream) => {
            (table::load_version(upstream_url, options, q).await?, true)
        }
        _ => (upstream, false),
    };
    Ok(Resume {
        target,
        last,
        quarantine,
        q_last,
        upstream,
        more,
    })
}

/// One stage run in progress: timing, run record, lineage.
pub(crate) struct StageRun {
    pub(crate) result: StageResult,
    dataset: String,
    started: Instant,
    run: IngestionRun,
    pub(crate) inputs: Vec<LineageTable>,
    pub(crate) columns: Vec<ColumnLineage>,
}

impl StageRun {
    /// Starts a run of `stage` writing `table` (`zone/name`) for `dataset`
    /// and records it in the catalog.
    pub(crate) async fn start(
        ctx: &ZoneContext,
        stage: &str,
        dataset: &str,
        table: String,
    ) -> Result<Self> {
        let run_id = uuid::Uuid::now_v7().to_string();
        let run = IngestionRun {
            id: run_id.clone(),
            dataset: dataset.to_string(),
            source: format!("process:{stage}:{table}"),
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
        Ok(Self {
            result: StageResult {
                stage: stage.to_string(),
                table,
                status: StageStatus::Skipped,
                run_id,
                rows_in: 0,
                rows_out: 0,
                rows_quarantined: 0,
                rows_deduplicated: 0,
                version: None,
                input_versions: BTreeMap::new(),
                duration_ms: 0,
                error: None,
            },
            dataset: dataset.to_string(),
            started: Instant::now(),
            run,
            inputs: Vec::new(),
            columns: Vec::new(),
        })
    }

    pub(crate) fn run_id(&self) -> &str {
        &self.result.run_id
    }

    /// Notes an upstream table and the version read.
    pub(crate) fn input(&mut self, table: String, version: i64) {
        self.result.input_versions.insert(table.clone(), version);
        self.inputs.push(LineageTable {
            table,
            version: Some(version),
        });
    }

    /// Records the outcome (run, lineage when something was written) and
    /// returns the StageResult, which carries a failure's message.
    pub(crate) async fn finish(
        mut self,
        ctx: &ZoneContext,
        outcome: Result<()>,
    ) -> Result<StageResult> {
        self.result.duration_ms = self.started.elapsed().as_millis() as u64;
        let r = &mut self.result;
        match &outcome {
            Ok(()) if r.version.is_some() => r.status = StageStatus::Succeeded,
            Ok(()) => r.status = StageStatus::Skipped,
            Err(e) => {
                r.status = StageStatus::Failed;
                r.error = Some(short(&e.to_string()));
            }
        }
        self.run.status = match r.status {
            StageStatus::Succeeded if r.rows_quarantined > 0 => RunStatus::Partial,
            StageStatus::Succeeded => RunStatus::Success,
            StageStatus::Skipped => RunStatus::Skipped,
            StageStatus::Failed => RunStatus::Failed,
        };
        self.run.ended_at = Some(Utc::now());
        self.run.rows_read = r.rows_in as i64;
        self.run.rows_written = r.rows_out as i64;
        self.run.rows_quarantined = r.rows_quarantined as i64;
        self.run.delta_version = r.version;
        self.run.error = r.error.clone();
        if let Err(e) = &outcome {
            tracing::debug!(stage = %r.stage, table = %r.table, "stage failed: {e}");
        }
        ctx.metadata.finish_run(&self.run).await?;
        if r.status == StageStatus::Succeeded {
            register_table(ctx, &self.dataset, &r.table).await?;
            ctx.metadata
                .record_lineage(&LineageFact {
                    run_id: r.run_id.clone(),
                    // Named for what it writes: `cleanse:events`, `consume:<mart>`.
                    job: format!(
                        "{}:{}",
                        r.stage,
                        r.table.rsplit('/').next().unwrap_or(&self.dataset)
                    ),
                    inputs: self.inputs,
                    outputs: vec![LineageTable {
                        table: r.table.clone(),
                        version: r.version,
                    }],
                    columns: self.columns,
                    recorded_at: Utc::now(),
                })
                .await?;
        }
        Ok(self.result)
    }
}

/// Registers the table a stage wrote (`zone/name`) in the catalog, with the
/// dataset's owner, description and tags.
async fn register_table(ctx: &ZoneContext, dataset: &str, table: &str) -> Result<()> {
    let Some((zone, name)) = table.split_once('/') else {
        return Ok(());
    };
    let Ok(zone) = zone.parse::<Zone>() else {
        return Ok(());
    };
    let ds = ctx.config.datasets.get(dataset);
    let now = Utc::now();
    ctx.metadata
        .upsert_dataset(&DatasetRecord {
            name: name.to_string(),
            zone,
            location: ctx.table_url(zone, name).to_string(),
            owner: ds.and_then(|d| d.owner.clone()),
            description: ds.and_then(|d| d.description.clone()),
            tags: ds.map(|d| d.tags.clone()).unwrap_or_default(),
            created_at: now,
            updated_at: now,
        })
        .await?;
    Ok(())
}

/// Runs `sql` (one row of BIGINT columns) and returns the values.
pub(crate) async fn counts(ctx: &SessionContext, sql: &str) -> Result<Vec<u64>> {
    let batches = ctx
        .sql(sql)
        .await
        .context(|| format!("plan `{sql}`"))?
        .collect()
        .await
        .context(|| format!("run `{sql}`"))?;
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| Error::Internal(format!("`{sql}` returned no row")))?;
    batch
        .columns()
        .iter()
        .map(|c| {
            let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Int64)
                .map_err(|e| Error::Internal(e.to_string()))?;
            let c = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&c);
            Ok(if arrow::array::Array::is_null(c, 0) {
                0
            } else {
                c.value(0).max(0) as u64
            })
        })
        .collect()
}

/// Registers `df` under `name` in `ctx`, replacing an earlier one.
pub(crate) fn register(ctx: &SessionContext, name: &str, df: DataFrame) -> Result<()> {
    ctx.deregister_table(name)
        .context(|| format!("deregister {name}"))?;
    ctx.register_table(name, df.into_view())
        .context(|| format!("register {name}"))?;
    Ok(())
}

/// An error message cut to a readable length: DataFusion and delta-rs
/// errors can embed whole plans.
fn short(message: &str) -> String {
    const MAX: usize = 600;
    if message.len() <= MAX {
        return message.to_string();
    }
    let mut end = MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (run with -v for the full error)", &message[..end])
}
