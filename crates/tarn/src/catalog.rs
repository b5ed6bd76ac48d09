//! What `tarn catalog` shows: datasets, their schemas and versions, runs, and
//! the row counts of their tables in each zone (read from the Delta logs).

use serde::Serialize;
use tarn_common::{DatasetSchema, Zone};
use tarn_governance::{IngestionRun, SchemaVersion};

use crate::error::{Error, Result};
use crate::lake::DataLake;

/// A dataset's table in one zone, with its current size.
#[derive(Debug, Clone, Serialize)]
pub struct ZoneTable {
    /// The zone.
    pub zone: Zone,
    /// Table URL.
    pub location: String,
    /// Current Delta statistics, if the table exists.
    pub stats: Option<TableStats>,
}

/// Size of a Delta table at its latest version.
#[derive(Debug, Clone, Serialize)]
pub struct TableStats {
    /// Latest version.
    pub version: i64,
    /// Rows (from the per-file statistics).
    pub rows: u64,
    /// Data files.
    pub files: u64,
    /// Bytes in data files.
    pub bytes: u64,
}

/// One line of `tarn catalog list`.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogEntry {
    /// Dataset name.
    pub name: String,
    /// Zones it has tables in.
    pub zones: Vec<Zone>,
    /// Owner.
    pub owner: Option<String>,
    /// Newest pinned schema version.
    pub schema_version: Option<i64>,
    /// Outcome of the newest run.
    pub last_run: Option<IngestionRun>,
}

/// Everything `tarn catalog show` prints.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetDetails {
    /// Dataset name.
    pub name: String,
    /// Owner.
    pub owner: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Tables per zone with row counts.
    pub tables: Vec<ZoneTable>,
    /// Quarantine table with its row count.
    pub quarantine: ZoneTable,
    /// Pinned schema versions, oldest first.
    pub schema_versions: Vec<SchemaVersion>,
    /// The newest schema's fields: name, type, nullable.
    pub fields: Vec<(String, String, bool)>,
    /// Newest runs first.
    pub runs: Vec<IngestionRun>,
}

impl DataLake {
    /// Every dataset in the catalog.
    pub async fn catalog_list(&self) -> Result<Vec<CatalogEntry>> {
        let mut out: Vec<CatalogEntry> = Vec::new();
        for d in self.metadata().datasets().await? {
            if let Some(e) = out.iter_mut().find(|e| e.name == d.name) {
                e.zones.push(d.zone);
                continue;
            }
            out.push(CatalogEntry {
                schema_version: self
                    .metadata()
                    .latest_schema(&d.name)
                    .await?
                    .map(|v| v.version),
                last_run: self.metadata().runs(&d.name, 1).await?.into_iter().next(),
                name: d.name,
                zones: vec![d.zone],
                owner: d.owner,
            });
        }
        Ok(out)
    }

    /// Details of one dataset. An unknown name is an error.
    pub async fn catalog_show(&self, name: &str) -> Result<DatasetDetails> {
        let store = self.metadata();
        let records: Vec<_> = store
            .datasets()
            .await?
            .into_iter()
            .filter(|d| d.name == name)
            .collect();
        let versions = store.schema_versions(name).await?;
        if records.is_empty() && versions.is_empty() {
            return Err(Error::Invalid(format!(
                "no dataset named `{name}` in the catalog (see `tarn catalog list`)"
            )));
        }
        let roots = self.config().zone_roots()?;
        let mut tables = Vec::new();
        for zone in Zone::ALL {
            let url = roots.table_url(zone, name);
            tables.push(ZoneTable {
                zone,
                location: url.to_string(),
                stats: table_stats(&url, &roots.options).await?,
            });
        }
        let q_url = roots.quarantine_url(name);
        let quarantine = ZoneTable {
            zone: Zone::Raw,
            location: q_url.to_string(),
            stats: table_stats(&q_url, &roots.options).await?,
        };
        let fields = match versions.last() {
            Some(v) => DatasetSchema::from_avsc(&v.schema_avsc)?
                .fields
                .iter()
                .map(|f| (f.name.clone(), f.field_type.name(), f.nullable))
                .collect(),
            None => Vec::new(),
        };
        let first = records.first();
        Ok(DatasetDetails {
            name: name.to_string(),
            owner: first.and_then(|d| d.owner.clone()),
            description: first.and_then(|d| d.description.clone()),
            tags: first.map(|d| d.tags.clone()).unwrap_or_default(),
            tables,
            quarantine,
            schema_versions: versions,
            fields,
            runs: store.runs(name, 20).await?,
        })
    }
}

/// Version, rows, files and bytes of the Delta table at `url`; `None` if there is none.
pub async fn table_stats(
    url: &url::Url,
    options: &std::collections::HashMap<String, String>,
) -> Result<Option<TableStats>> {
    let Some(table) = tarn_ingest::load_table(url, options).await? else {
        return Ok(None);
    };
    let size = tarn_query::catalog::table_size(&table);
    Ok(Some(TableStats {
        version: table.version().unwrap_or(0) as i64,
        rows: size.rows,
        files: size.files,
        bytes: size.bytes,
    }))
}
