//! Erasure as the lake offers it (`tarn erase`): which tables, the deletes
//! and vacuum (in `tarn_zones::erase`), then the evidence, the audit entry,
//! the time-travel horizon and the cache.
//!
//! How erasure and history interact: the delete commits a new Delta version
//! of each table without the subject's rows. Older versions still name the
//! files that held them, so (1) tarn refuses to read any version older than
//! an erasure (the horizon is kept in the metadata store), and (2) the files
//! are vacuumed: at once with `override_retention`, otherwise once the zone's
//! `vacuum_hours` have passed (`tarn policy apply`).

use std::collections::{BTreeSet, HashMap};

use tarn_common::Zone;
use tarn_governance::ErasureRecord;
use tarn_zones::erase::{EraseReport, EraseRequest};

use crate::DataLake;
use crate::error::{Error, Result};

/// Which datasets an erasure covers.
#[derive(Debug, Clone)]
pub enum EraseScope {
    /// These datasets.
    Datasets(Vec<String>),
    /// Every dataset whose raw table has this column.
    WithColumn(String),
}

impl DataLake {
    /// Reads the erasure horizons from the metadata store into the query
    /// engine: versions older than an erasure are not readable.
    pub(crate) async fn load_erasure_horizons(&self) -> Result<()> {
        let mut horizons: HashMap<String, i64> = HashMap::new();
        for e in self.metadata.erasures().await? {
            for t in e.tables.iter().filter(|t| t.rows_deleted > 0) {
                let h = horizons.entry(t.url.clone()).or_default();
                *h = (*h).max(t.version_after);
            }
        }
        self.query.set_erasure_horizons(horizons);
        Ok(())
    }

    /// Deletes the rows matching `predicate` from every zone table (and
    /// quarantine) of the datasets in `scope`, vacuums, records the evidence
    /// and clears the query cache. Admins only.
    pub async fn erase(
        &self,
        predicate: &str,
        scope: &EraseScope,
        override_retention: bool,
        dry_run: bool,
    ) -> Result<(EraseReport, Option<ErasureRecord>)> {
        if !self.principal.is_admin {
            let why = format!(
                "permission denied: `{}` may not erase: it needs the admin role",
                self.principal.name
            );
            self.audit_action(
                "erase",
                predicate,
                false,
                None,
                serde_json::json!({ "reason": why }),
            )
            .await;
            return Err(Error::PermissionDenied(why));
        }
        if predicate.trim().is_empty() {
            return Err(Error::Invalid("give the rows to erase with --where".into()));
        }
        let datasets = self.erase_datasets(scope).await?;
        if datasets.is_empty() {
            return Err(Error::Invalid(format!("no dataset matches {scope:?}")));
        }
        let marts: Vec<String> = datasets
            .iter()
            .filter_map(|d| self.config.datasets.get(d)?.consume.as_ref())
            .flat_map(|c| c.marts.keys().cloned())
            .collect();
        let request = EraseRequest {
            predicate: predicate.to_string(),
            datasets: datasets.clone(),
            marts,
            override_retention,
            dry_run,
        };
        let id = uuid::Uuid::now_v7().to_string();
        let report = tarn_zones::erase::erase(&self.zones()?, &request, &id).await?;
        if dry_run {
            return Ok((report, None));
        }
        let record = ErasureRecord {
            id,
            at: chrono::Utc::now(),
            principal: self.principal.name.clone(),
            predicate: predicate.to_string(),
            tables: report.tables.clone(),
        };
        self.metadata.record_erasure(&record).await?;
        self.load_erasure_horizons().await?;
        for t in &report.tables {
            self.query.cache().invalidate_table(&t.url);
        }
        let rows: i64 = report.tables.iter().map(|t| t.rows_deleted).sum();
        self.audit_action(
            "erase",
            datasets.join(","),
            true,
            Some(rows),
            serde_json::json!({
                "erasure": record.id,
                "predicate": predicate,
                "tables": report.tables,
                "files_pending": report.files_pending,
            }),
        )
        .await;
        for t in report.tables.iter().filter(|t| t.rows_deleted > 0) {
            if let Some((zone, name)) = t.table.split_once('/')
                && let Ok(zone) = zone.parse::<Zone>()
                && !name.starts_with('_')
                && let Err(e) = self.statistics().refresh(zone, name).await
            {
                tracing::warn!(table = %t.table, "statistics not refreshed: {e}");
            }
        }
        Ok((report, Some(record)))
    }

    async fn erase_datasets(&self, scope: &EraseScope) -> Result<Vec<String>> {
        let known: BTreeSet<String> = self
            .metadata
            .datasets()
            .await?
            .into_iter()
            .map(|d| d.name)
            .chain(self.config.datasets.keys().cloned())
            .collect();
        match scope {
            EraseScope::Datasets(names) => {
                if let Some(unknown) = names.iter().find(|n| !known.contains(*n)) {
                    return Err(Error::Invalid(format!("unknown dataset `{unknown}`")));
                }
                Ok(names.clone())
            }
            EraseScope::WithColumn(column) => {
                let mut out = Vec::new();
                for name in known {
                    let sql = format!(
                        "SELECT * FROM raw.\"{}\" LIMIT 0",
                        name.replace('"', "\"\"")
                    );
                    if let Ok(plan) = self.system_query.without_audit().plan_sql(&sql).await
                        && plan.schema().fields().iter().any(|f| f.name() == column)
                    {
                        out.push(name);
                    }
                }
                Ok(out)
            }
        }
    }
}
