//! The SQL metadata store over sqlx: SQLite and PostgreSQL through one portable
//! schema (`migrations/`) and one implementation on sqlx's `Any` driver.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use tarn_common::Zone;

use crate::MetadataStore;
use crate::access::{AccessState, ApiToken, Grant, MaskRule, Principal, RowFilterRule};
use crate::error::{Context, Error, Result};
use crate::model::{
    AuditEvent, AuditFilter, ColumnClassification, DatasetRecord, ErasureRecord, IngestionRun,
    LineageFact, QualityResult, RunStatus, SchemaVersion, TableStatistics,
};
use crate::sql_access;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A metadata store on a SQL database reached through sqlx.
#[derive(Debug, Clone)]
pub struct SqlMetadataStore {
    pool: AnyPool,
}

impl SqlMetadataStore {
    /// Connects to `url` (`sqlite://PATH`, `postgresql://…`, `postgres://…`) and runs
    /// the migrations. A SQLite file is created if it does not exist.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgresql://") || url.starts_with("postgres://");
        let (url, max) = if let Some(rest) = url.strip_prefix("sqlite://") {
            let sep = if rest.contains('?') { '&' } else { '?' };
            (format!("sqlite://{rest}{sep}mode=rwc"), 1)
        } else if postgres {
            (url.to_string(), 4)
        } else {
            return Err(Error::UnsupportedUrl(url.to_string()));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    // Every query appends to the audit log: a write-ahead log
                    // with NORMAL sync keeps that to one cheap append, still
                    // durable across a crash of tarn.
                    if !postgres {
                        sqlx::Executor::execute(
                            &mut *conn,
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .context(&format!("cannot connect to {}", redact(&url)))?;
        MIGRATOR.run(&pool).await?;
        sql_access::protect_audit_log(&pool, postgres).await?;
        Ok(Self { pool })
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

pub(crate) fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::Corrupt(format!("timestamp `{s}`: {e}")))
}

fn dataset_from_row(r: &AnyRow) -> Result<DatasetRecord> {
    let zone: String = r.try_get("zone").context("read dataset")?;
    let tags: String = r.try_get("tags").context("read dataset")?;
    Ok(DatasetRecord {
        name: r.try_get("name").context("read dataset")?,
        zone: zone.parse().map_err(|e| Error::Corrupt(format!("{e}")))?,
        location: r.try_get("location").context("read dataset")?,
        owner: r.try_get("owner").context("read dataset")?,
        description: r.try_get("description").context("read dataset")?,
        tags: serde_json::from_str(&tags).map_err(|e| Error::Corrupt(format!("tags: {e}")))?,
        created_at: parse_ts(
            &r.try_get::<String, _>("created_at")
                .context("read dataset")?,
        )?,
        updated_at: parse_ts(
            &r.try_get::<String, _>("updated_at")
                .context("read dataset")?,
        )?,
    })
}

fn schema_from_row(r: &AnyRow) -> Result<SchemaVersion> {
    Ok(SchemaVersion {
        dataset: r.try_get("dataset").context("read schema")?,
        version: r.try_get("version").context("read schema")?,
        schema_avsc: r.try_get("schema_avsc").context("read schema")?,
        fingerprint: r.try_get("fingerprint").context("read schema")?,
        created_at: parse_ts(
            &r.try_get::<String, _>("created_at")
                .context("read schema")?,
        )?,
    })
}

fn run_from_row(r: &AnyRow) -> Result<IngestionRun> {
    let status: String = r.try_get("status").context("read run")?;
    let ended: Option<String> = r.try_get("ended_at").context("read run")?;
    Ok(IngestionRun {
        id: r.try_get("id").context("read run")?,
        dataset: r.try_get("dataset").context("read run")?,
        source: r.try_get("source").context("read run")?,
        status: RunStatus::parse(&status)
            .ok_or_else(|| Error::Corrupt(format!("run status `{status}`")))?,
        started_at: parse_ts(&r.try_get::<String, _>("started_at").context("read run")?)?,
        ended_at: ended.as_deref().map(parse_ts).transpose()?,
        rows_read: r.try_get("rows_read").context("read run")?,
        rows_written: r.try_get("rows_written").context("read run")?,
        rows_quarantined: r.try_get("rows_quarantined").context("read run")?,
        bytes_read: r.try_get("bytes_read").context("read run")?,
        delta_version: r.try_get("delta_version").context("read run")?,
        error: r.try_get("error").context("read run")?,
    })
}

/// A short, stable fingerprint of a schema text.
fn fingerprint(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex()[..16].to_string()
}

#[async_trait]
impl MetadataStore for SqlMetadataStore {
    async fn upsert_dataset(&self, d: &DatasetRecord) -> Result<()> {
        let tags = serde_json::to_string(&d.tags).expect("strings serialize");
        sqlx::query(
            "INSERT INTO datasets (name, zone, location, owner, description, tags, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (name, zone) DO UPDATE SET location = excluded.location, \
             owner = COALESCE(excluded.owner, datasets.owner), \
             description = COALESCE(excluded.description, datasets.description), \
             tags = excluded.tags, updated_at = excluded.updated_at",
        )
        .bind(&d.name)
        .bind(d.zone.as_str())
        .bind(&d.location)
        .bind(&d.owner)
        .bind(&d.description)
        .bind(tags)
        .bind(ts(&d.created_at))
        .bind(ts(&d.updated_at))
        .execute(&self.pool)
        .await
        .context("register dataset")?;
        Ok(())
    }

    async fn dataset(&self, name: &str, zone: Zone) -> Result<Option<DatasetRecord>> {
        sqlx::query("SELECT * FROM datasets WHERE name = $1 AND zone = $2")
            .bind(name)
            .bind(zone.as_str())
            .fetch_optional(&self.pool)
            .await
            .context("look up dataset")?
            .as_ref()
            .map(dataset_from_row)
            .transpose()
    }

    async fn datasets(&self) -> Result<Vec<DatasetRecord>> {
        sqlx::query("SELECT * FROM datasets ORDER BY name, zone")
            .fetch_all(&self.pool)
            .await
            .context("list datasets")?
            .iter()
            .map(dataset_from_row)
            .collect()
    }

    async fn pin_schema(&self, dataset: &str, schema_avsc: &str) -> Result<SchemaVersion> {
        let fp = fingerprint(schema_avsc);
        // Two writers may pin at once: the loser of the insert race reads again.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let latest = self.latest_schema(dataset).await?;
            if let Some(latest) = &latest
                && latest.fingerprint == fp
                && latest.schema_avsc == schema_avsc
            {
                return Ok(latest.clone());
            }
            let v = SchemaVersion {
                dataset: dataset.to_string(),
                version: latest.map_or(1, |l| l.version + 1),
                schema_avsc: schema_avsc.to_string(),
                fingerprint: fp.clone(),
                created_at: Utc::now(),
            };
            let inserted = sqlx::query(
                "INSERT INTO schema_versions (dataset, version, schema_avsc, fingerprint, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&v.dataset)
            .bind(v.version)
            .bind(&v.schema_avsc)
            .bind(&v.fingerprint)
            .bind(ts(&v.created_at))
            .execute(&self.pool)
            .await;
            match inserted {
                Ok(_) => return Ok(v),
                Err(e)
                    if attempts < 5
                        && e.as_database_error()
                            .is_some_and(|d| d.is_unique_violation()) => {}
                Err(e) => return Err(e).context("pin schema"),
            }
        }
    }

    async fn latest_schema(&self, dataset: &str) -> Result<Option<SchemaVersion>> {
        sqlx::query(
            "SELECT * FROM schema_versions WHERE dataset = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(dataset)
        .fetch_optional(&self.pool)
        .await
        .context("read schema")?
        .as_ref()
        .map(schema_from_row)
        .transpose()
    }

    async fn schema_versions(&self, dataset: &str) -> Result<Vec<SchemaVersion>> {
        sqlx::query("SELECT * FROM schema_versions WHERE dataset = $1 ORDER BY version")
            .bind(dataset)
            .fetch_all(&self.pool)
            .await
            .context("list schema versions")?
            .iter()
            .map(schema_from_row)
            .collect()
    }

    async fn start_run(&self, r: &IngestionRun) -> Result<()> {
        sqlx::query(
            "INSERT INTO ingestion_runs (id, dataset, source, status, started_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&r.id)
        .bind(&r.dataset)
        .bind(&r.source)
        .bind(r.status.as_str())
        .bind(ts(&r.started_at))
        .execute(&self.pool)
        .await
        .context("record run start")?;
        Ok(())
    }

    async fn finish_run(&self, r: &IngestionRun) -> Result<()> {
        sqlx::query(
            "UPDATE ingestion_runs SET status = $2, ended_at = $3, rows_read = $4, rows_written = $5, \
             rows_quarantined = $6, bytes_read = $7, delta_version = $8, error = $9 WHERE id = $1",
        )
        .bind(&r.id)
        .bind(r.status.as_str())
        .bind(r.ended_at.as_ref().map(ts))
        .bind(r.rows_read)
        .bind(r.rows_written)
        .bind(r.rows_quarantined)
        .bind(r.bytes_read)
        .bind(r.delta_version)
        .bind(&r.error)
        .execute(&self.pool)
        .await
        .context("record run end")?;
        Ok(())
    }

    async fn runs(&self, dataset: &str, limit: usize) -> Result<Vec<IngestionRun>> {
        sqlx::query(
            "SELECT * FROM ingestion_runs WHERE dataset = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
        )
        .bind(dataset)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .context("list runs")?
        .iter()
        .map(run_from_row)
        .collect()
    }

    async fn recent_runs(&self, limit: usize) -> Result<Vec<IngestionRun>> {
        sqlx::query("SELECT * FROM ingestion_runs ORDER BY started_at DESC, id DESC LIMIT $1")
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .context("list runs")?
            .iter()
            .map(run_from_row)
            .collect()
    }

    async fn put_table_statistics(&self, stats: &TableStatistics) -> Result<()> {
        let json = serde_json::to_string(stats)
            .map_err(|e| Error::Corrupt(format!("table statistics: {e}")))?;
        sqlx::query(
            "INSERT INTO table_statistics (zone, dataset, delta_version, computed_at, stats) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (zone, dataset) DO UPDATE SET delta_version = excluded.delta_version, \
             computed_at = excluded.computed_at, stats = excluded.stats",
        )
        .bind(stats.zone.as_str())
        .bind(&stats.dataset)
        .bind(stats.delta_version)
        .bind(ts(&stats.computed_at))
        .bind(json)
        .execute(&self.pool)
        .await
        .context("store table statistics")?;
        Ok(())
    }

    async fn table_statistics(&self, zone: Zone, dataset: &str) -> Result<Option<TableStatistics>> {
        sqlx::query("SELECT stats FROM table_statistics WHERE zone = $1 AND dataset = $2")
            .bind(zone.as_str())
            .bind(dataset)
            .fetch_optional(&self.pool)
            .await
            .context("read table statistics")?
            .map(|r| stats_from_row(&r))
            .transpose()
    }

    async fn all_table_statistics(&self) -> Result<Vec<TableStatistics>> {
        sqlx::query("SELECT stats FROM table_statistics ORDER BY zone, dataset")
            .fetch_all(&self.pool)
            .await
            .context("list table statistics")?
            .iter()
            .map(stats_from_row)
            .collect()
    }

    async fn record_quality(&self, results: &[QualityResult]) -> Result<()> {
        let mut tx = self.pool.begin().await.context("store quality results")?;
        for r in results {
            sqlx::query(
                "INSERT INTO quality_results (run_id, dataset, stage, expectation, check_kind, \
                 severity, passed, evaluated_rows, failed_rows, observed, recorded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&r.run_id)
            .bind(&r.dataset)
            .bind(&r.stage)
            .bind(&r.expectation)
            .bind(&r.check)
            .bind(&r.severity)
            .bind(i64::from(r.passed))
            .bind(r.evaluated_rows)
            .bind(r.failed_rows)
            .bind(&r.observed)
            .bind(ts(&r.recorded_at))
            .execute(&mut *tx)
            .await
            .context("store quality results")?;
        }
        tx.commit().await.context("store quality results")?;
        Ok(())
    }

    async fn quality_results(&self, dataset: &str, limit: usize) -> Result<Vec<QualityResult>> {
        sqlx::query(
            "SELECT q.* FROM quality_results q JOIN (SELECT run_id, max(recorded_at) AS at \
             FROM quality_results WHERE dataset = $1 GROUP BY run_id \
             ORDER BY at DESC, run_id DESC LIMIT $2) r ON q.run_id = r.run_id \
             ORDER BY q.recorded_at DESC, q.run_id DESC, q.expectation",
        )
        .bind(dataset)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .context("read quality results")?
        .iter()
        .map(quality_from_row)
        .collect()
    }

    async fn record_lineage(&self, fact: &LineageFact) -> Result<()> {
        sqlx::query(
            "INSERT INTO lineage_facts (run_id, job, inputs, outputs, columns, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&fact.run_id)
        .bind(&fact.job)
        .bind(to_json(&fact.inputs)?)
        .bind(to_json(&fact.outputs)?)
        .bind(to_json(&fact.columns)?)
        .bind(ts(&fact.recorded_at))
        .execute(&self.pool)
        .await
        .context("store lineage")?;
        Ok(())
    }

    async fn lineage_facts(&self) -> Result<Vec<LineageFact>> {
        sqlx::query("SELECT * FROM lineage_facts ORDER BY recorded_at, run_id")
            .fetch_all(&self.pool)
            .await
            .context("read lineage")?
            .iter()
            .map(lineage_from_row)
            .collect()
    }

    async fn put_principal(&self, p: &Principal) -> Result<()> {
        sql_access::put_principal(&self.pool, p).await
    }
    async fn delete_principal(&self, name: &str) -> Result<bool> {
        sql_access::delete_principal(&self.pool, name).await
    }
    async fn put_role(&self, name: &str, description: Option<&str>) -> Result<()> {
        sql_access::put_role(&self.pool, name, description).await
    }
    async fn delete_role(&self, name: &str) -> Result<bool> {
        sql_access::delete_role(&self.pool, name).await
    }
    async fn set_role_member(&self, role: &str, principal: &str, member: bool) -> Result<bool> {
        sql_access::set_role_member(&self.pool, role, principal, member).await
    }
    async fn put_grant(&self, grant: &Grant) -> Result<bool> {
        sql_access::put_grant(&self.pool, grant).await
    }
    async fn delete_grant(&self, grant: &Grant) -> Result<bool> {
        sql_access::delete_grant(&self.pool, grant).await
    }
    async fn put_mask(&self, mask: &MaskRule) -> Result<()> {
        sql_access::put_mask(&self.pool, mask).await
    }
    async fn delete_mask(
        &self,
        zone: Zone,
        dataset: &str,
        column: &str,
        role: Option<&str>,
    ) -> Result<bool> {
        sql_access::delete_mask(&self.pool, zone.as_str(), dataset, column, role).await
    }
    async fn put_row_filter(&self, filter: &RowFilterRule) -> Result<()> {
        sql_access::put_row_filter(&self.pool, filter).await
    }
    async fn delete_row_filter(&self, id: &str) -> Result<bool> {
        sql_access::delete_row_filter(&self.pool, id).await
    }
    async fn access_state(&self) -> Result<AccessState> {
        sql_access::access_state(&self.pool).await
    }
    async fn put_token(&self, token: &ApiToken) -> Result<()> {
        sql_access::put_token(&self.pool, token).await
    }
    async fn tokens(&self) -> Result<Vec<ApiToken>> {
        sql_access::tokens(&self.pool).await
    }
    async fn use_token(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        sql_access::use_token(&self.pool, token_hash).await
    }
    async fn revoke_token(&self, id: &str) -> Result<bool> {
        sql_access::revoke_token(&self.pool, id).await
    }
    async fn append_audit(&self, event: &AuditEvent) -> Result<()> {
        sql_access::append_audit(&self.pool, event).await
    }
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        sql_access::audit(&self.pool, filter).await
    }
    async fn put_classification(&self, c: &ColumnClassification) -> Result<()> {
        sql_access::put_classification(&self.pool, c).await
    }
    async fn classifications(&self, dataset: Option<&str>) -> Result<Vec<ColumnClassification>> {
        sql_access::classifications(&self.pool, dataset).await
    }
    async fn record_erasure(&self, erasure: &ErasureRecord) -> Result<()> {
        sql_access::record_erasure(&self.pool, erasure).await
    }
    async fn erasures(&self) -> Result<Vec<ErasureRecord>> {
        sql_access::erasures(&self.pool).await
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Corrupt(format!("lineage: {e}")))
}

fn quality_from_row(r: &AnyRow) -> Result<QualityResult> {
    let ctx = "read quality results";
    Ok(QualityResult {
        run_id: r.try_get("run_id").context(ctx)?,
        dataset: r.try_get("dataset").context(ctx)?,
        stage: r.try_get("stage").context(ctx)?,
        expectation: r.try_get("expectation").context(ctx)?,
        check: r.try_get("check_kind").context(ctx)?,
        severity: r.try_get("severity").context(ctx)?,
        passed: r.try_get::<i64, _>("passed").context(ctx)? != 0,
        evaluated_rows: r.try_get("evaluated_rows").context(ctx)?,
        failed_rows: r.try_get("failed_rows").context(ctx)?,
        observed: r.try_get("observed").context(ctx)?,
        recorded_at: parse_ts(&r.try_get::<String, _>("recorded_at").context(ctx)?)?,
    })
}

fn lineage_from_row(r: &AnyRow) -> Result<LineageFact> {
    let ctx = "read lineage";
    let text = |name: &str| -> Result<String> { r.try_get(name).context(ctx) };
    fn parse<T: serde::de::DeserializeOwned>(name: &str, text: &str) -> Result<T> {
        serde_json::from_str(text).map_err(|e| Error::Corrupt(format!("lineage {name}: {e}")))
    }
    Ok(LineageFact {
        run_id: text("run_id")?,
        job: text("job")?,
        inputs: parse("inputs", &text("inputs")?)?,
        outputs: parse("outputs", &text("outputs")?)?,
        columns: parse("columns", &text("columns")?)?,
        recorded_at: parse_ts(&text("recorded_at")?)?,
    })
}

fn stats_from_row(r: &AnyRow) -> Result<TableStatistics> {
    let json: String = r.try_get("stats").context("read table statistics")?;
    serde_json::from_str(&json).map_err(|e| Error::Corrupt(format!("table statistics: {e}")))
}
