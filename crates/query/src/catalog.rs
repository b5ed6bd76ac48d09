//! The DataFusion catalog `tarn`: one schema per zone (`raw`, `cleansed`,
//! `curated`, `consumption`), each Delta table under a zone root a table, plus
//! `system` (see [`crate::system`]).
//!
//! Tables are resolved when a query is planned: the Delta log is read (or
//! brought up to date) then, so a commit made by another process is visible to
//! the next query. Time travel is part of the table name:
//! `curated."user_events@v3"` reads version 3 and
//! `curated."user_events@2024-02-10T12:00:00Z"` (or `@2024-02-10`) the latest
//! version committed at or before that time.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{CatalogProvider, SchemaProvider, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use deltalake::{DeltaTable, DeltaTableBuilder};
use tarn_common::{Zone, ZoneRoots};
use tokio::sync::Mutex;
use url::Url;

use crate::access::AccessContext;
use crate::error::{Error, Result};
use crate::system::SystemSchema;
use datafusion::common::TableReference;
use tarn_governance::access::TableAccess;

/// The name of tarn's DataFusion catalog.
pub const CATALOG: &str = "tarn";

/// Which version of a table a query reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TableVersionSpec {
    /// The newest committed version.
    Latest,
    /// `name@vN`.
    Version(i64),
    /// `name@<timestamp>`: the newest version committed at or before it.
    AsOf(DateTime<Utc>),
}

/// Splits `user_events@v3` / `user_events@2024-02-10T00:00:00Z` into the
/// table name and the version it asks for.
pub fn parse_table_name(name: &str) -> Result<(&str, TableVersionSpec)> {
    let Some((base, spec)) = name.split_once('@') else {
        return Ok((name, TableVersionSpec::Latest));
    };
    if let Some(v) = spec.strip_prefix('v').or_else(|| spec.strip_prefix('V'))
        && let Ok(v) = v.parse::<i64>()
    {
        return Ok((base, TableVersionSpec::Version(v)));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(spec) {
        return Ok((base, TableVersionSpec::AsOf(t.with_timezone(&Utc))));
    }
    if let Ok(d) = NaiveDate::parse_from_str(spec, "%Y-%m-%d") {
        let t = d.and_hms_opt(23, 59, 59).expect("valid time").and_utc();
        return Ok((base, TableVersionSpec::AsOf(t)));
    }
    Err(Error::Invalid(format!(
        "bad time-travel suffix in table `{name}`: use `{base}@v<version>`, \
         `{base}@<RFC 3339 timestamp>` or `{base}@<YYYY-MM-DD>`"
    )))
}

/// What a query read from one table: enough to key the cache and to estimate cost.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableId {
    /// Zone of the table.
    pub zone: Zone,
    /// Dataset (table) name, without a time-travel suffix.
    pub name: String,
    /// The Delta version read.
    pub version: i64,
    /// The table's URL.
    pub url: String,
}

impl std::fmt::Display for TableId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}@v{}", self.zone, self.name, self.version)
    }
}

/// Size of a table version according to its Delta log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSize {
    /// Data files.
    pub files: u64,
    /// Bytes of data files.
    pub bytes: u64,
    /// Rows, from the per-file statistics.
    pub rows: u64,
}

/// A Delta table as the catalog hands it to DataFusion: the delta-rs provider,
/// plus which table and version it is.
#[derive(Debug)]
pub struct ZoneTable {
    id: TableId,
    size: TableSize,
    inner: Arc<dyn TableProvider>,
}

impl ZoneTable {
    /// Which table and version this is.
    pub fn id(&self) -> &TableId {
        &self.id
    }

    /// Files, bytes and rows of this version.
    pub fn size(&self) -> TableSize {
        self.size
    }
}

#[async_trait]
impl TableProvider for ZoneTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        _input: Arc<dyn ExecutionPlan>,
        _insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Plan(format!(
            "{}.{} is read-only in queries: data enters through `tarn ingest` and `tarn process`",
            self.id.zone, self.id.name
        )))
    }
}

/// Opens Delta tables and keeps them open, bringing each up to date from its
/// log when a query resolves it.
#[derive(Debug)]
pub struct TableResolver {
    roots: ZoneRoots,
    /// Scan settings (Parquet filter pushdown, view types) for delta-rs.
    scan_session: Arc<SessionState>,
    open: Mutex<HashMap<Url, DeltaTable>>,
    known: RwLock<HashMap<Zone, BTreeSet<String>>>,
    /// Per table URL, the oldest version still readable after an erasure.
    horizons: RwLock<HashMap<String, i64>>,
}

impl TableResolver {
    /// A resolver for the tables under `roots`, scanning them with the
    /// Parquet settings of `scan_session`.
    pub fn new(roots: ZoneRoots, scan_session: Arc<SessionState>) -> Self {
        Self {
            roots,
            scan_session,
            open: Mutex::new(HashMap::new()),
            known: RwLock::new(HashMap::new()),
            horizons: RwLock::new(HashMap::new()),
        }
    }

    /// Sets, per table URL, the oldest version time travel may read (the
    /// version an erasure committed).
    pub fn set_erasure_horizons(&self, horizons: HashMap<String, i64>) {
        *self.horizons.write().expect("catalog lock") = horizons
            .into_iter()
            .map(|(url, v)| (url.trim_end_matches('/').to_string(), v))
            .collect();
    }

    fn horizon(&self, url: &str) -> Option<i64> {
        let horizons = self.horizons.read().expect("catalog lock");
        horizons.get(url.trim_end_matches('/')).copied()
    }

    /// The zone roots.
    pub fn roots(&self) -> &ZoneRoots {
        &self.roots
    }

    /// The table `name` (with an optional time-travel suffix) in `zone`, or
    /// `None` if there is no Delta table there.
    pub async fn resolve(&self, zone: Zone, name: &str) -> Result<Option<ZoneTable>> {
        let (base, spec) = parse_table_name(name)?;
        if base.is_empty() || base.starts_with(['_', '.']) || base.contains('/') {
            return Ok(None);
        }
        let url = self.roots.table_url(zone, base);
        let table = match spec {
            TableVersionSpec::Latest => match self.latest(&url).await? {
                Some(t) => t,
                None => return Ok(None),
            },
            TableVersionSpec::Version(v) => {
                let Some(mut t) = self.load(&url).await? else {
                    return Ok(None);
                };
                let v = u64::try_from(v).map_err(|_| {
                    Error::Invalid(format!("table version must not be negative: `{name}`"))
                })?;
                t.load_version(v as _).await.map_err(|e| {
                    Error::Invalid(format!("{zone}.{base} has no version {v}: {e}"))
                })?;
                t
            }
            TableVersionSpec::AsOf(at) => {
                let Some(mut t) = self.load(&url).await? else {
                    return Ok(None);
                };
                let none_then = |why: String| {
                    Error::Invalid(format!(
                        "{zone}.{base} has no version committed at or before {at}{why}"
                    ))
                };
                t.load_with_datetime(at)
                    .await
                    .map_err(|e| none_then(format!(": {e}")))?;
                // delta-rs falls back to the oldest version; a time before the
                // table existed has no version at all.
                let loaded_at = t
                    .version()
                    .and_then(|v| t.snapshot().ok()?.version_timestamp(v));
                if loaded_at.is_some_and(|ms| ms > at.timestamp_millis()) {
                    return Err(none_then(" (the table did not exist yet)".into()));
                }
                t
            }
        };
        self.known
            .write()
            .expect("catalog lock")
            .entry(zone)
            .or_default()
            .insert(base.to_string());
        let version = table.version().map_or(0, |v| v as i64);
        if let Some(horizon) = self.horizon(url.as_str())
            && version < horizon
        {
            return Err(Error::Invalid(format!(
                "{zone}.{base} version {version} predates an erasure (committed as version \
                 {horizon}); versions before it are no longer readable (see `tarn erase --help`)"
            )));
        }
        let size = table_size(&table);
        let inner = table
            .table_provider()
            .with_session(self.scan_session.clone())
            .await
            .map_err(|e| Error::Internal(format!("delta provider for {url}: {e}")))?;
        Ok(Some(ZoneTable {
            id: TableId {
                zone,
                name: base.to_string(),
                version,
                url: url.to_string(),
            },
            size,
            inner,
        }))
    }

    /// The newest version of `zone.name`, `None` if there is no table.
    pub(crate) async fn open_latest(&self, zone: Zone, name: &str) -> Result<Option<DeltaTable>> {
        self.latest(&self.roots.table_url(zone, name)).await
    }

    /// The newest version of the table at `url`, reusing an open handle.
    async fn latest(&self, url: &Url) -> Result<Option<DeltaTable>> {
        let cached = self.open.lock().await.get(url).cloned();
        let table = match cached {
            Some(mut t) => {
                t.update_incremental(None)
                    .await
                    .map_err(|e| Error::delta(url, e))?;
                t
            }
            None => {
                let Some(mut t) = self.load(url).await? else {
                    return Ok(None);
                };
                t.load().await.map_err(|e| Error::delta(url, e))?;
                t
            }
        };
        let mut open = self.open.lock().await;
        let newer = open
            .get(url)
            .is_none_or(|held| held.version() < table.version());
        if newer {
            open.insert(url.clone(), table.clone());
        }
        Ok(Some(table))
    }

    /// An unloaded handle on the table at `url`, `None` if there is no table.
    async fn load(&self, url: &Url) -> Result<Option<DeltaTable>> {
        let err = |e| Error::delta(url, e);
        let table = DeltaTableBuilder::from_url(url.clone())
            .map_err(err)?
            .with_storage_options(self.roots.options.clone())
            .build()
            .map_err(err)?;
        if !table.verify_deltatable_existence().await.map_err(err)? {
            return Ok(None);
        }
        Ok(Some(table))
    }

    /// Lists the tables under each zone root, so `SHOW TABLES` and
    /// `information_schema` see tables created since the engine started.
    pub async fn refresh_listing(&self) -> Result<()> {
        for zone in Zone::ALL {
            let root = self.roots.root(zone);
            let (store, path) = tarn_common::storage::object_store_for(root, &self.roots.options)?;
            let listing = match store.list_with_delimiter(Some(&path)).await {
                Ok(l) => l,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(Error::Internal(format!("cannot list {root}: {e}"))),
            };
            let names: BTreeSet<String> = listing
                .common_prefixes
                .iter()
                .filter_map(|p| p.filename().map(str::to_string))
                .filter(|n| !n.starts_with(['_', '.']))
                .collect();
            self.known
                .write()
                .expect("catalog lock")
                .insert(zone, names);
        }
        Ok(())
    }

    fn known(&self, zone: Zone) -> Vec<String> {
        self.known
            .read()
            .expect("catalog lock")
            .get(&zone)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Files, bytes and rows of the loaded version of `table`, from its log.
pub fn table_size(table: &DeltaTable) -> TableSize {
    let mut size = TableSize::default();
    if let Ok(state) = table.snapshot() {
        for f in state.log_data().iter() {
            size.files += 1;
            size.bytes += u64::try_from(f.size()).unwrap_or(0);
            size.rows += f.num_records().unwrap_or(0) as u64;
        }
    }
    size
}

/// The `tarn` catalog.
#[derive(Debug)]
pub struct TarnCatalog {
    zones: Vec<(Zone, Arc<ZoneSchema>)>,
    system: Arc<SystemSchema>,
    access: Option<Arc<AccessContext>>,
}

impl TarnCatalog {
    /// A catalog over `resolver`'s zones and the `system` schema, as
    /// `access` allows (`None`: unrestricted).
    pub fn new(
        resolver: Arc<TableResolver>,
        system: Arc<SystemSchema>,
        access: Option<Arc<AccessContext>>,
    ) -> Self {
        let zones = Zone::ALL
            .into_iter()
            .map(|zone| {
                let schema = ZoneSchema {
                    zone,
                    resolver: resolver.clone(),
                    access: access.clone(),
                };
                (zone, Arc::new(schema))
            })
            .collect();
        Self {
            zones,
            system,
            access,
        }
    }
}

impl CatalogProvider for TarnCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.zones.iter().map(|(z, _)| z.to_string()).collect();
        names.push(crate::system::SCHEMA.to_string());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == crate::system::SCHEMA {
            return match &self.access {
                Some(a) => Some(Arc::new(DeniedSchema(format!(
                    "permission denied: the system tables are for members of the admin role, \
                     which `{}` is not",
                    a.policy().name
                )))),
                None => Some(self.system.clone()),
            };
        }
        self.zones
            .iter()
            .find(|(z, _)| z.as_str() == name)
            .map(|(_, s)| s.clone() as Arc<dyn SchemaProvider>)
    }
}

/// One zone's tables.
#[derive(Debug)]
pub struct ZoneSchema {
    zone: Zone,
    resolver: Arc<TableResolver>,
    access: Option<Arc<AccessContext>>,
}

impl ZoneSchema {
    /// Whether the principal may see that `name` exists.
    fn visible(&self, name: &str) -> bool {
        self.access
            .as_ref()
            .is_none_or(|a| !matches!(a.policy().table(self.zone, name), TableAccess::Denied(_)))
    }
}

#[async_trait]
impl SchemaProvider for ZoneSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.resolver.known(self.zone);
        names.retain(|n| self.visible(n));
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        match self.resolver.resolve(self.zone, name).await {
            Ok(Some(t)) => match &self.access {
                Some(a) => a
                    .secure(t, TableReference::full(CATALOG, self.zone.as_str(), name))
                    .map(Some),
                None => Ok(Some(Arc::new(t))),
            },
            Ok(None) => Ok(None),
            Err(Error::Invalid(msg)) => Err(DataFusionError::Plan(msg)),
            Err(e) => Err(DataFusionError::External(Box::new(e))),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.visible(name) && self.resolver.known(self.zone).iter().any(|n| n == name)
    }
}

/// A schema every lookup of which is refused (the system tables for
/// principals that are not admins).
#[derive(Debug)]
struct DeniedSchema(String);

#[async_trait]
impl SchemaProvider for DeniedSchema {
    fn table_names(&self) -> Vec<String> {
        Vec::new()
    }

    async fn table(&self, _name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::External(Box::new(
            Error::PermissionDenied(self.0.clone()),
        )))
    }

    fn table_exist(&self, _name: &str) -> bool {
        false
    }
}
