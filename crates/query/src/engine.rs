//! QueryEngine: plans SQL and structured queries against the `tarn` catalog,
//! answers from the QueryCache when it can, and streams results.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{ExecutionPlan, RecordBatchStream};
use futures::{Stream, StreamExt, TryStreamExt};
use serde::Serialize;
use tarn_common::TarnConfig;
use tarn_governance::access::PrincipalPolicy;
use tarn_governance::{AuditEvent, MetadataStore};

use crate::access::AccessContext;
use crate::cache::{CacheKey, CachedResult, Principal, QueryCache, batches_size};
use crate::catalog::{CATALOG, TableId, TableResolver, TableSize, TarnCatalog, ZoneTable};
use crate::cost::{self, Explanation};
use crate::error::{Error, Result};
use crate::structured::{self, Query};
use crate::system::SystemSchema;

/// How a result was produced, as far as the cache is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    /// Served from the cache.
    Hit,
    /// Computed; stored if it fits.
    Miss,
    /// Not cacheable: volatile functions, non-Delta tables, or not a query.
    Bypass,
    /// The cache is turned off.
    Disabled,
}

/// A running query: its schema and a stream of result batches.
pub struct QueryStream {
    /// Result schema.
    pub schema: SchemaRef,
    /// Result batches.
    pub stream: SendableRecordBatchStream,
    /// Whether the result came from the cache.
    pub cache: CacheStatus,
    /// The tables (and versions) read.
    pub tables: Vec<TableId>,
    /// The columns read, as `zone/dataset.column`.
    pub columns: Vec<String>,
}

impl std::fmt::Debug for QueryStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryStream")
            .field("schema", &self.schema)
            .field("cache", &self.cache)
            .field("tables", &self.tables)
            .finish()
    }
}

impl QueryStream {
    /// All result batches.
    pub async fn collect(self) -> Result<Vec<RecordBatch>> {
        Ok(self.stream.try_collect().await?)
    }
}

/// What a plan reads, found by walking it (subqueries included).
#[derive(Debug, Default)]
pub(crate) struct PlanInputs {
    /// Delta tables read, with their size.
    pub tables: Vec<(TableId, TableSize)>,
    /// Whether it reads anything other than zone tables (`system.*`, ...).
    pub reads_non_delta: bool,
    /// Whether it calls volatile functions (`now()`, `random()`).
    pub volatile: bool,
}

impl PlanInputs {
    pub(crate) fn of(plan: &LogicalPlan) -> Result<Self> {
        let mut inputs = PlanInputs::default();
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                let zone_table = source_as_provider(&scan.source).ok().and_then(|p| {
                    p.downcast_ref::<ZoneTable>()
                        .map(|t| (t.id().clone(), t.size()))
                });
                match zone_table {
                    Some(t) if !inputs.tables.iter().any(|(id, _)| id == &t.0) => {
                        inputs.tables.push(t)
                    }
                    Some(_) => {}
                    None => inputs.reads_non_delta = true,
                }
            }
            if node.expressions().iter().any(|e| e.is_volatile()) {
                inputs.volatile = true;
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(inputs)
    }
}

/// The query engine of one lake.
#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
    resolver: Arc<TableResolver>,
    cache: Arc<QueryCache>,
    metadata: Arc<dyn MetadataStore>,
    system: Arc<SystemSchema>,
    partition_keys: Arc<HashMap<String, String>>,
    principal: Principal,
    /// The policy enforced; `None` for admins.
    access: Option<Arc<AccessContext>>,
    /// Whether queries are written to the audit log.
    audit: bool,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("roots", self.resolver.roots())
            .field("principal", &self.principal)
            .finish()
    }
}

impl QueryEngine {
    /// An engine over the lake described by `config`, whose catalog is `metadata`.
    pub fn new(config: &TarnConfig, metadata: Arc<dyn MetadataStore>) -> Result<Self> {
        let cache = Arc::new(QueryCache::new(
            config.query.cache_max_bytes,
            config.query.cache_max_entry_bytes,
        ));

        // DataFusion's own settings can be tuned through DATAFUSION_* variables
        // (e.g. DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS=true).
        let session = SessionConfig::from_env()
            .map_err(|e| Error::Invalid(format!("DATAFUSION_* environment: {e}")))?
            .with_information_schema(true)
            .with_default_catalog_and_schema(CATALOG, "raw")
            .with_target_partitions(config.processing.processing_threads.max(1))
            .with_batch_size(config.processing.batch_size.max(1));
        // delta-rs takes its scan settings (Parquet filter pushdown, view
        // types) from a session; without one it pushes filters into the
        // Parquet decoder, which is slower for most queries.
        let scan_session = SessionStateBuilder::new()
            .with_config(session.clone())
            .build();
        let resolver = Arc::new(TableResolver::new(
            config.zone_roots()?,
            Arc::new(scan_session),
        ));
        let ctx = SessionContext::new_with_config(session);
        let system = Arc::new(SystemSchema::new(metadata.clone(), cache.clone()));
        ctx.register_catalog(
            CATALOG,
            Arc::new(TarnCatalog::new(resolver.clone(), system.clone(), None)),
        );
        let partition_keys = config
            .datasets
            .iter()
            .filter_map(|(name, d)| Some((name.clone(), d.partition_key.clone()?)))
            .collect();
        Ok(Self {
            ctx,
            resolver,
            cache,
            metadata,
            system,
            partition_keys: Arc::new(partition_keys),
            principal: Principal::admin(),
            access: None,
            audit: true,
        })
    }

    /// The same engine (sharing its tables and cache) acting for the
    /// principal of `policy`: every table it reads is restricted by the
    /// policy's grants, masks and row filters; `hash` masks use `salt`.
    pub fn with_policy(&self, policy: PrincipalPolicy, salt: &str) -> Self {
        let principal = Principal {
            name: policy.name.clone(),
            policy_fingerprint: policy.fingerprint(),
        };
        if policy.is_admin {
            return Self {
                principal,
                access: None,
                ..self.clone()
            };
        }
        let access = Arc::new(AccessContext::new(
            policy,
            salt.to_string(),
            &self.ctx.state(),
        ));
        let state = SessionStateBuilder::new()
            .with_config(self.ctx.copied_config())
            .with_default_features()
            .with_query_planner(Arc::new(crate::barrier::BarrierQueryPlanner))
            .with_optimizer_rule(Arc::new(crate::barrier::SafePredicatePushdown))
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.register_catalog(
            CATALOG,
            Arc::new(TarnCatalog::new(
                self.resolver.clone(),
                self.system.clone(),
                Some(access.clone()),
            )),
        );
        Self {
            ctx,
            principal,
            access: Some(access),
            ..self.clone()
        }
    }

    /// The same engine without writing queries to the audit log (for tarn's
    /// own planning, e.g. of marts, which is audited as the stage run).
    pub fn without_audit(&self) -> Self {
        Self {
            audit: false,
            ..self.clone()
        }
    }

    /// Runs SQL for tarn's own purposes (sampling, compliance assertions):
    /// planned and restricted as the principal, but neither cached nor
    /// counted in the cache statistics, nor audited.
    pub async fn collect_internal(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let plan = self.without_audit().plan_sql(sql).await?;
        let df = datafusion::dataframe::DataFrame::new(self.ctx.state(), plan);
        Ok(df.collect().await?)
    }

    /// Makes versions older than an erasure unreadable: per table URL, the
    /// version the erasure committed.
    pub fn set_erasure_horizons(&self, horizons: HashMap<String, i64>) {
        self.resolver.set_erasure_horizons(horizons);
    }

    /// The result cache.
    pub fn cache(&self) -> &Arc<QueryCache> {
        &self.cache
    }

    /// The DataFusion session, with the `tarn` catalog registered.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// The catalog the engine reads (for statistics).
    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.metadata
    }

    pub(crate) fn resolver(&self) -> &TableResolver {
        &self.resolver
    }

    /// Plans one SQL statement. Queries and `SET`/`SHOW`/`EXPLAIN` are
    /// allowed; DDL and DML are not: data enters through ingest and process.
    /// A statement the principal may not run is refused here, and recorded
    /// in the audit log.
    pub async fn plan_sql(&self, sql: &str) -> Result<LogicalPlan> {
        let planned = self.plan_sql_unchecked(sql).await;
        self.enforce(planned, sql).await
    }

    /// Refuses a plan that reads a column the principal may not read, and
    /// audits every refusal.
    async fn enforce(&self, planned: Result<LogicalPlan>, text: &str) -> Result<LogicalPlan> {
        let planned = match planned {
            // Its metrics count the rows the row filters remove.
            Ok(LogicalPlan::Analyze(_)) if self.access.is_some() => {
                Err(Error::PermissionDenied(format!(
                    "permission denied: EXPLAIN ANALYZE shows row counts before row filters; \
                     it is for members of the admin role, which `{}` is not (EXPLAIN works)",
                    self.principal.name
                )))
            }
            Ok(plan) if self.access.is_some() => {
                let optimized = self.ctx.state().optimize(&plan)?;
                crate::access::check_denied_columns(&optimized).map(|_| plan)
            }
            other => other,
        };
        let planned = planned.map_err(|e| match e {
            Error::DataFusion(df) => match crate::access::denial(&df) {
                Some(msg) => Error::PermissionDenied(msg),
                None => Error::DataFusion(df),
            },
            other => other,
        });
        if let Err(Error::PermissionDenied(msg)) = &planned
            && self.audit
        {
            let mut event = AuditEvent::now(&self.principal.name, "query", None, false);
            event.detail = serde_json::json!({ "statement": text, "reason": msg });
            if let Err(e) = self.metadata.append_audit(&event).await {
                tracing::warn!("audit log: {e}");
            }
        }
        planned
    }

    async fn plan_sql_unchecked(&self, sql: &str) -> Result<LogicalPlan> {
        let state = self.ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(sql, &dialect)?;
        let refs = state.resolve_table_references(&statement)?;
        if refs
            .iter()
            .any(|r| r.schema() == Some("information_schema"))
            || sql.trim_start().to_ascii_lowercase().starts_with("show")
        {
            self.resolver.refresh_listing().await?;
        }
        let plan = match state.statement_to_plan(statement).await {
            Ok(plan) => plan,
            Err(e) => return Err(self.explain_missing_table(e).await),
        };
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .verify_plan(&plan)
            .map_err(|e| {
                Error::Invalid(format!(
                    "tarn queries are read-only ({}); data enters through `tarn ingest` \
                     and `tarn process`",
                    e.find_root()
                ))
            })?;
        Ok(plan)
    }

    /// The zone tables `plan` reads, at the versions resolved when it was planned.
    pub fn tables_read(plan: &LogicalPlan) -> Result<Vec<TableId>> {
        Ok(PlanInputs::of(plan)?
            .tables
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// DataFusion's "table 'tarn.raw.x' not found", with the tables that exist.
    async fn explain_missing_table(&self, e: datafusion::error::DataFusionError) -> Error {
        let msg = e.find_root().to_string();
        let missing = msg
            .split_once("table '")
            .and_then(|(_, rest)| rest.split_once("' not found"))
            .map(|(name, _)| name.to_string());
        let Some(name) = missing else {
            return e.into();
        };
        let parts: Vec<&str> = name.split('.').collect();
        match parts.as_slice() {
            [CATALOG, crate::system::SCHEMA, table] => Error::Invalid(format!(
                "no table `{table}` in system; it has: {}",
                crate::system::TABLES.join(", ")
            )),
            [CATALOG, zone, table] => match zone.parse() {
                Ok(zone) => self.unknown_table(zone, table).await,
                Err(_) => Error::Invalid(format!(
                    "no schema `{zone}`: the schemas are raw, cleansed, curated, consumption \
                     and system"
                )),
            },
            _ => e.into(),
        }
    }

    /// Plans a structured query, as the principal may run it.
    pub async fn plan_query(&self, query: &Query) -> Result<LogicalPlan> {
        let planned = self.plan_query_unchecked(query).await;
        let text = serde_json::to_string(query).unwrap_or_default();
        self.enforce(planned, &text).await
    }

    async fn plan_query_unchecked(&self, query: &Query) -> Result<LogicalPlan> {
        let (zone, name) = query.table()?;
        // Through the catalog, so the principal's restrictions apply.
        let provider = self
            .ctx
            .catalog(CATALOG)
            .and_then(|c| c.schema(zone.as_str()))
            .ok_or_else(|| Error::Internal(format!("no schema {zone}")))?
            .table(name)
            .await?;
        let Some(provider) = provider else {
            return Err(self.unknown_table(zone, name).await);
        };
        let reference = TableReference::full(CATALOG, zone.as_str(), name);
        let scan = LogicalPlanBuilder::scan(reference, provider_as_source(provider), None)?;
        let dataset = name.split('@').next().unwrap_or(name);
        structured::build_plan(
            query,
            scan,
            self.partition_keys.get(dataset).map(String::as_str),
        )
    }

    async fn unknown_table(&self, zone: tarn_common::Zone, name: &str) -> Error {
        let _ = self.resolver.refresh_listing().await;
        let known = self
            .ctx
            .catalog(CATALOG)
            .and_then(|c| c.schema(zone.as_str()));
        let names = known.map(|s| s.table_names()).unwrap_or_default();
        let hint = if names.is_empty() {
            format!("the {zone} zone has no tables yet")
        } else {
            format!("{zone} has: {}", names.join(", "))
        };
        Error::Invalid(format!("no table `{name}` in the {zone} zone; {hint}"))
    }

    /// Runs one SQL statement.
    pub async fn sql(&self, sql: &str) -> Result<QueryStream> {
        let plan = self.plan_sql(sql).await?;
        self.execute_statement(plan, sql).await
    }

    /// Runs a structured query (the seed's `query_data`).
    pub async fn query(&self, query: &Query) -> Result<QueryStream> {
        let plan = self.plan_query(query).await?;
        let text = serde_json::to_string(query).unwrap_or_default();
        self.execute_statement(plan, &text).await
    }

    /// The cache key of `plan`, or `None` if its result must not be cached.
    fn cache_key(&self, plan: &LogicalPlan, inputs: &PlanInputs) -> Option<CacheKey> {
        let is_query = !matches!(
            plan,
            LogicalPlan::Statement(_)
                | LogicalPlan::Explain(_)
                | LogicalPlan::Analyze(_)
                | LogicalPlan::DescribeTable(_)
                | LogicalPlan::Ddl(_)
                | LogicalPlan::Dml(_)
                | LogicalPlan::Copy(_)
        );
        if !is_query || inputs.volatile || inputs.reads_non_delta {
            return None;
        }
        let settings: String = self
            .ctx
            .state()
            .config_options()
            .entries()
            .into_iter()
            .map(|e| format!("{}={}\n", e.key, e.value.unwrap_or_default()))
            .collect();
        let tables: Vec<TableId> = inputs.tables.iter().map(|(t, _)| t.clone()).collect();
        let text = plan.display_indent_schema().to_string();
        Some(CacheKey::new(&text, &tables, &self.principal, &settings))
    }

    /// Runs a plan, from the cache when an entry for it is current.
    pub async fn execute(&self, plan: LogicalPlan) -> Result<QueryStream> {
        self.execute_statement(plan, "").await
    }

    /// [`execute`](Self::execute), recording `text` (the statement the plan
    /// came from) in the audit log with the tables and columns read and the
    /// rows returned.
    pub async fn execute_statement(&self, plan: LogicalPlan, text: &str) -> Result<QueryStream> {
        let plan_hash =
            blake3::hash(plan.display_indent().to_string().as_bytes()).to_hex()[..16].to_string();
        let mut query = self.execute_plan(plan).await?;
        if self.audit {
            let mut event = AuditEvent::now(
                &self.principal.name,
                "query",
                Some(
                    query
                        .tables
                        .iter()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                true,
            );
            event.detail = serde_json::json!({
                "statement": text,
                "plan_hash": plan_hash,
                "tables": query.tables.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                "columns": query.columns,
                "cache": query.cache,
            });
            query.stream = Box::pin(AuditingStream {
                inner: query.stream,
                event: Some(event),
                rows: 0,
                metadata: self.metadata.clone(),
                pending: None,
            });
        }
        Ok(query)
    }

    async fn execute_plan(&self, plan: LogicalPlan) -> Result<QueryStream> {
        let inputs = PlanInputs::of(&plan)?;
        let tables: Vec<TableId> = inputs.tables.iter().map(|(t, _)| t.clone()).collect();
        let key = if self.cache.enabled() {
            let key = self.cache_key(&plan, &inputs);
            if key.is_none() {
                self.cache.note_bypass();
            }
            key
        } else {
            None
        };
        if let Some(key) = key
            && let Some(hit) = self.cache.get(&key)
        {
            let stream = MemoryStream::try_new(hit.batches.clone(), hit.schema.clone(), None)?;
            return Ok(QueryStream {
                schema: hit.schema.clone(),
                stream: Box::pin(stream),
                cache: CacheStatus::Hit,
                tables,
                columns: hit.columns.clone(),
            });
        }
        let (stream, columns) = if let LogicalPlan::Statement(_) = plan {
            // `SET` and friends change the session; DataFusion runs them.
            let df = self.ctx.execute_logical_plan(plan).await?;
            (df.execute_stream().await?, Vec::new())
        } else {
            let state = self.ctx.state();
            let optimized = state.optimize(&plan)?;
            let columns = crate::access::columns_read(&optimized);
            let physical = state
                .query_planner()
                .create_physical_plan(&optimized, &state)
                .await?;
            let stream = datafusion::physical_plan::execute_stream(physical, state.task_ctx())?;
            (stream, columns)
        };
        let schema = stream.schema();
        let (stream, cache): (SendableRecordBatchStream, _) = match key {
            Some(key) => (
                Box::pin(CachingStream {
                    inner: stream,
                    key,
                    cache: self.cache.clone(),
                    held: Some(Vec::new()),
                    bytes: 0,
                    tables: tables.clone(),
                    columns: columns.clone(),
                }),
                CacheStatus::Miss,
            ),
            None if self.cache.enabled() => (stream, CacheStatus::Bypass),
            None => (stream, CacheStatus::Disabled),
        };
        Ok(QueryStream {
            schema,
            stream,
            cache,
            tables,
            columns,
        })
    }

    /// The optimized plans of `plan`, the files, bytes and rows each table
    /// scan reads before and after pruning, and an estimated cost.
    ///
    /// For a restricted principal the scan statistics are left out: they
    /// count the rows and bytes its row filters hide.
    pub async fn explain(&self, plan: &LogicalPlan) -> Result<Explanation> {
        let inputs = PlanInputs::of(plan)?;
        let state = self.ctx.state();
        let optimized = state.optimize(plan)?;
        let physical: Arc<dyn ExecutionPlan> = state.create_physical_plan(plan).await?;
        let tables = if self.access.is_some() {
            Vec::new()
        } else {
            inputs.tables
        };
        Ok(cost::explain(&optimized, &physical, &tables))
    }
}

/// Passes batches through and, when the stream ends, stores them in the cache
/// unless they outgrew the largest entry it keeps.
struct CachingStream {
    inner: SendableRecordBatchStream,
    key: CacheKey,
    cache: Arc<QueryCache>,
    held: Option<Vec<RecordBatch>>,
    bytes: usize,
    tables: Vec<TableId>,
    columns: Vec<String>,
}

impl Stream for CachingStream {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = futures::ready!(this.inner.poll_next_unpin(cx));
        match &item {
            Some(Ok(batch)) => {
                if let Some(held) = &mut this.held {
                    this.bytes += batch.get_array_memory_size();
                    if this.bytes > this.cache.max_entry_bytes() {
                        this.held = None;
                        this.cache.note_too_large();
                    } else {
                        held.push(batch.clone());
                    }
                }
            }
            Some(Err(_)) => this.held = None,
            None => {
                if let Some(batches) = this.held.take() {
                    // One compact copy: the batches may be slices of larger buffers.
                    let schema = this.inner.schema();
                    let batches = match concat_batches(&schema, &batches) {
                        Ok(b) => vec![b],
                        Err(_) => batches,
                    };
                    let bytes = batches_size(&batches);
                    this.cache.put(
                        this.key,
                        CachedResult {
                            schema: this.inner.schema(),
                            batches,
                            tables: std::mem::take(&mut this.tables),
                            columns: std::mem::take(&mut this.columns),
                            bytes,
                        },
                    );
                }
            }
        }
        Poll::Ready(item)
    }
}

impl RecordBatchStream for CachingStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

/// Passes batches through, counting rows, and when the stream ends (or fails)
/// appends the query's event to the audit log before reporting the end.
struct AuditingStream {
    inner: SendableRecordBatchStream,
    event: Option<AuditEvent>,
    rows: i64,
    metadata: Arc<dyn MetadataStore>,
    pending: Option<futures::future::BoxFuture<'static, ()>>,
}

impl AuditingStream {
    fn finish(&mut self, error: Option<String>) {
        if let Some(mut event) = self.event.take() {
            event.rows = Some(self.rows);
            if let Some(e) = error {
                event.detail["error"] = serde_json::Value::String(e);
            }
            let metadata = self.metadata.clone();
            self.pending = Some(Box::pin(async move {
                if let Err(e) = metadata.append_audit(&event).await {
                    tracing::warn!("audit log: {e}");
                }
            }));
        }
    }
}

impl Stream for AuditingStream {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(pending) = &mut this.pending {
            futures::ready!(pending.as_mut().poll(cx));
            this.pending = None;
            return Poll::Ready(None);
        }
        if this.event.is_none() {
            return Poll::Ready(None);
        }
        match futures::ready!(this.inner.poll_next_unpin(cx)) {
            Some(Ok(batch)) => {
                this.rows += batch.num_rows() as i64;
                Poll::Ready(Some(Ok(batch)))
            }
            Some(Err(e)) => {
                this.finish(Some(e.to_string()));
                Poll::Ready(Some(Err(e)))
            }
            None => {
                this.finish(None);
                let pending = this.pending.as_mut().expect("just set");
                futures::ready!(pending.as_mut().poll(cx));
                this.pending = None;
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for AuditingStream {
    /// A result abandoned before its end is still audited, with the rows
    /// returned so far.
    fn drop(&mut self) {
        if self.event.is_some() {
            self.finish(Some("the reader stopped before the end".into()));
        }
        if let (Some(pending), Ok(rt)) =
            (self.pending.take(), tokio::runtime::Handle::try_current())
        {
            rt.spawn(pending);
        }
    }
}

impl RecordBatchStream for AuditingStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}
