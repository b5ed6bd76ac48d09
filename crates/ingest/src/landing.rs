//! Landing: writes validated records into the raw table and rejects into the
//! quarantine table, and commits both with the source positions they cover.
//! Every connector lands through it, so they share validation, quarantine and
//! reconciliation (read = written + quarantined).

use std::collections::BTreeMap;

use chrono::Utc;
use deltalake::kernel::Transaction;
use tarn_common::config::SchemaEvolution;
use tarn_common::{DatasetSchema, FieldType, Zone};
use url::Url;

use crate::error::{Error, Result};
use crate::pipeline::IngestContext;
use crate::quarantine::{quarantine_batch, quarantine_schema};
use crate::raw_zone::{TableWriter, committed_version, load_table, open_or_create};
use crate::spec::DataSpec;
use crate::validator::{DataValidator, Validated};

/// Commit metadata (`commitInfo` entries).
pub(crate) type CommitInfo = serde_json::Map<String, serde_json::Value>;

/// Records counted by a landing since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub read: u64,
    pub written: u64,
    pub quarantined: u64,
}

/// Open writers on a dataset's raw and quarantine tables.
pub(crate) struct Landing {
    raw: TableWriter,
    quarantine: Option<TableWriter>,
    raw_url: Url,
    q_url: Url,
    ctx: IngestContext,
    dataset: String,
    run_id: String,
    /// Counts of everything landed: committed, and staged since.
    pub(crate) counts: Counts,
    reasons: BTreeMap<String, u64>,
    /// `counts` and `reasons` as of the last commit, restored by an abort.
    committed: (Counts, BTreeMap<String, u64>),
}

impl Landing {
    /// Opens the raw table of `spec.dataset` (creating it for `schema`,
    /// partitioned by the date of the partition key if the spec has one) and
    /// its quarantine table if it exists, with a validator for `schema`.
    pub(crate) async fn open(
        ctx: &IngestContext,
        spec: &DataSpec,
        schema: DatasetSchema,
        run_id: &str,
    ) -> Result<(Self, DataValidator)> {
        let dataset = spec.dataset.as_str();
        let partition_key = spec.partition_key.as_deref();
        let evolution = spec.schema_evolution;
        // A bad partition key fails here, before any table is created.
        let validator = DataValidator::new(
            schema,
            evolution,
            spec.partition_key.clone(),
            run_id,
            "",
            Utc::now().timestamp_micros(),
        )?;
        let options = &ctx.roots.options;
        let raw_url = ctx.roots.table_url(Zone::Raw, dataset);
        let q_url = ctx.roots.quarantine_url(dataset);
        let partition_cols: Vec<String> = partition_key
            .iter()
            .map(|_| crate::columns::PARTITION_DATE.to_string())
            .collect();
        let schema = validator.schema();
        let table_schema = DataValidator::table_schema(schema, partition_key.is_some());
        let table =
            open_or_create(&raw_url, options, &table_schema, &partition_cols, dataset).await?;
        check_partitioning(&table, &partition_cols, &raw_url)?;
        let uuids: Vec<String> = schema
            .fields
            .iter()
            .filter(|f| f.field_type == FieldType::Uuid)
            .map(|f| f.name.clone())
            .collect();
        let mut raw = TableWriter::new(table, &uuids)?;
        if evolution == SchemaEvolution::Additive {
            if !partition_cols.is_empty() {
                return Err(Error::Invalid(
                    "additive schema evolution is not supported on partitioned tables yet".into(),
                ));
            }
            raw.allow_new_columns();
        }
        let quarantine = load_table(&q_url, options)
            .await?
            .map(|t| TableWriter::new(t, &[]))
            .transpose()?;
        let landing = Self {
            raw,
            quarantine,
            raw_url,
            q_url,
            ctx: ctx.clone(),
            dataset: dataset.to_string(),
            run_id: run_id.to_string(),
            counts: Counts::default(),
            reasons: BTreeMap::new(),
            committed: Default::default(),
        };
        Ok((landing, validator))
    }

    /// The raw table's URL.
    pub(crate) fn raw_url(&self) -> &Url {
        &self.raw_url
    }

    /// Stages one validated chunk read from `source`: valid rows into raw,
    /// rejects into quarantine unless `quarantine` is false (they were
    /// quarantined by an earlier run that died before its raw commit).
    pub(crate) async fn land(
        &mut self,
        v: Validated,
        source: &str,
        quarantine: bool,
    ) -> Result<()> {
        self.counts.read += v.rows_read as u64;
        self.counts.quarantined += v.rejects.len() as u64;
        for r in &v.rejects {
            let key = match &r.field {
                Some(f) => format!("{f}: {}", r.reason),
                None => r.reason.clone(),
            };
            *self.reasons.entry(key).or_default() += 1;
        }
        if let Some(batch) = v.valid {
            self.counts.written += batch.num_rows() as u64;
            self.raw.write(batch).await?;
        }
        if v.rejects.is_empty() || !quarantine {
            return Ok(());
        }
        let q = match &mut self.quarantine {
            Some(q) => q,
            None => {
                let table = open_or_create(
                    &self.q_url,
                    &self.ctx.roots.options,
                    &quarantine_schema(),
                    &[],
                    &format!("_quarantine_{}", self.dataset),
                )
                .await?;
                self.quarantine.insert(TableWriter::new(table, &[])?)
            }
        };
        let batch = quarantine_batch(
            &v.rejects,
            &self.run_id,
            &self.dataset,
            source,
            Utc::now().timestamp_micros(),
        )?;
        q.write(batch).await
    }

    /// Commits what is staged: the quarantine table first (if it has staged
    /// rows) with `quarantine_txns`, then the raw table with `raw_txns`, each
    /// with `info` as commit metadata. Returns (quarantine version, raw version).
    pub(crate) async fn commit(
        &mut self,
        raw_txns: Vec<Transaction>,
        quarantine_txns: Vec<Transaction>,
        info: CommitInfo,
    ) -> Result<(Option<i64>, i64)> {
        let mut q_version = None;
        if let Some(q) = &mut self.quarantine
            && q.rows > 0
        {
            q_version = Some(q.commit(quarantine_txns, info.clone()).await?);
            tarn_common::failpoint("ingest:after-quarantine");
        }
        let version = self.raw.commit(raw_txns, info).await?;
        self.committed = (self.counts, self.reasons.clone());
        Ok((q_version, version))
    }

    /// Drops everything staged since the last commit.
    pub(crate) fn abort(&mut self) {
        (self.counts, self.reasons) = self.committed.clone();
        self.raw.abort();
        if let Some(q) = &mut self.quarantine {
            q.abort();
        }
    }

    /// Reloads both tables to their latest versions (after a conflict).
    pub(crate) async fn reload(&mut self) -> Result<()> {
        self.raw.reload().await?;
        if let Some(q) = &mut self.quarantine {
            q.reload().await?;
        }
        Ok(())
    }

    /// Brings both tables to their latest versions, keeping what is staged,
    /// and returns the `txn` version of each app id in (raw, quarantine).
    pub(crate) async fn committed(
        &mut self,
        app_ids: &[String],
    ) -> Result<Vec<(Option<i64>, Option<i64>)>> {
        self.raw.refresh().await?;
        match &mut self.quarantine {
            Some(q) => q.refresh().await?,
            // Another writer may have created it since.
            None => {
                if let Some(t) = load_table(&self.q_url, &self.ctx.roots.options).await? {
                    self.quarantine = Some(TableWriter::new(t, &[])?);
                }
            }
        }
        let mut out = Vec::with_capacity(app_ids.len());
        for id in app_ids {
            let raw = committed_version(&self.raw.table, id).await?;
            let quarantine = match &self.quarantine {
                Some(q) => committed_version(&q.table, id).await?,
                None => None,
            };
            out.push((raw, quarantine));
        }
        Ok(out)
    }

    /// Quarantine reasons with their counts, most frequent first (at most 20).
    pub(crate) fn errors(&self) -> Vec<String> {
        let mut errors: Vec<(&String, &u64)> = self.reasons.iter().collect();
        errors.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        errors
            .into_iter()
            .take(20)
            .map(|(r, n)| format!("{n} × {r}"))
            .collect()
    }
}

fn check_partitioning(table: &deltalake::DeltaTable, wanted: &[String], url: &Url) -> Result<()> {
    let actual: Vec<String> = table
        .snapshot()
        .map_err(|e| Error::delta(url, e))?
        .metadata()
        .partition_columns()
        .to_vec();
    if actual != wanted {
        return Err(Error::Invalid(format!(
            "table {url} is partitioned by {actual:?}, but this ingest asks for {wanted:?}; \
             keep --partition-key as on the first ingest"
        )));
    }
    Ok(())
}
