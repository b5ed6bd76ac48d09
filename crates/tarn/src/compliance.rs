//! The ComplianceChecker and PII classification as the lake offers them:
//! `tarn compliance check`, the blocking rules that guard ingest and
//! promotion, detection of PII on ingest and `tarn classify`.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use tarn_common::Zone;
use tarn_governance::ColumnClassification;
use tarn_governance::classify::{Detection, classify_column};
use tarn_governance::compliance::{ComplianceRules, DatasetFacts, RuleKind, RuleResult};

use crate::DataLake;
use crate::error::{Error, Result};

/// Rows sampled per ingest to detect PII.
const SAMPLE_ROWS: usize = 1000;
/// Detections at least this confident count for masking policies before a
/// person reviews them; weaker ones are only shown.
const TRUSTED_CONFIDENCE: f64 = 0.8;

/// One column's classification as `tarn classify` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClassifiedColumn {
    /// The column.
    pub column: String,
    /// The tag in force (`None` when cleared by a person).
    pub tag: Option<String>,
    /// Where it comes from: `tarn.yaml`, `auto` or `manual`.
    pub source: String,
    /// Detection confidence (1 for declared and reviewed tags).
    pub confidence: f64,
    /// Why.
    pub evidence: String,
}

impl DataLake {
    /// The rules of `compliance.yaml` (none when the file is absent).
    pub fn compliance_rules(&self) -> Result<ComplianceRules> {
        let path = self
            .config
            .governance
            .compliance_rules
            .as_deref()
            .unwrap_or("compliance.yaml");
        Ok(ComplianceRules::load(&self.config.resolve_path(path))?)
    }

    /// Per dataset, column → classification tag in force: tags a person set
    /// or cleared (`tarn classify`) win over `tarn.yaml`'s
    /// `classifications:`, which win over confident detections.
    pub async fn effective_classifications(
        &self,
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let stored = self.metadata.classifications(None).await?;
        for c in stored.iter().filter(|c| c.source == "auto") {
            if c.confidence >= TRUSTED_CONFIDENCE {
                out.entry(c.dataset.clone())
                    .or_default()
                    .insert(c.column.clone(), c.tag.clone());
            }
        }
        for (name, ds) in &self.config.datasets {
            for (column, tag) in &ds.classifications {
                out.entry(name.clone())
                    .or_default()
                    .insert(column.clone(), tag.clone());
            }
        }
        for c in stored.iter().filter(|c| c.source == "manual") {
            let columns = out.entry(c.dataset.clone()).or_default();
            if c.tag == "none" {
                columns.remove(&c.column);
            } else {
                columns.insert(c.column.clone(), c.tag.clone());
            }
        }
        out.retain(|_, cols| !cols.is_empty());
        Ok(out)
    }

    /// A dataset's column classifications with their sources, in the order
    /// of precedence of [`effective_classifications`](Self::effective_classifications):
    /// detections, then tarn.yaml, then a person's decisions.
    pub async fn classifications(&self, dataset: &str) -> Result<Vec<ClassifiedColumn>> {
        let stored = self.metadata.classifications(Some(dataset)).await?;
        let (manual, auto): (Vec<_>, Vec<_>) =
            stored.into_iter().partition(|c| c.source == "manual");
        let declared = self
            .config
            .datasets
            .get(dataset)
            .map(|ds| ds.classifications.clone())
            .unwrap_or_default();
        let mut out: BTreeMap<String, ClassifiedColumn> = BTreeMap::new();
        for c in auto {
            let entry = ClassifiedColumn {
                tag: Some(c.tag),
                source: c.source,
                confidence: c.confidence,
                evidence: c.evidence,
                column: c.column,
            };
            out.insert(entry.column.clone(), entry);
        }
        for (column, tag) in declared {
            let entry = ClassifiedColumn {
                column: column.clone(),
                tag: Some(tag),
                source: "tarn.yaml".into(),
                confidence: 1.0,
                evidence: "declared in tarn.yaml".into(),
            };
            out.insert(column, entry);
        }
        for c in manual {
            let entry = ClassifiedColumn {
                tag: Some(c.tag).filter(|t| t != "none"),
                source: c.source,
                confidence: 1.0,
                evidence: c.evidence,
                column: c.column,
            };
            out.insert(entry.column.clone(), entry);
        }
        Ok(out.into_values().collect())
    }

    /// Sets (`Some(tag)`) or clears (`None`) a column's classification by
    /// hand; the decision sticks across later detections.
    pub async fn set_classification(
        &self,
        dataset: &str,
        column: &str,
        tag: Option<&str>,
    ) -> Result<()> {
        if !self.principal.is_admin {
            return Err(Error::PermissionDenied(format!(
                "permission denied: `{}` may not classify columns: it needs the admin role",
                self.principal.name
            )));
        }
        let record = ColumnClassification {
            dataset: dataset.into(),
            column: column.into(),
            tag: tag.unwrap_or("none").into(),
            confidence: 1.0,
            source: "manual".into(),
            evidence: format!(
                "{} by {}",
                if tag.is_some() { "set" } else { "cleared" },
                self.principal.name
            ),
            updated_at: chrono::Utc::now(),
        };
        self.metadata.put_classification(&record).await?;
        self.audit_action(
            "classify",
            format!("{dataset}.{column}"),
            true,
            None,
            serde_json::json!({ "tag": tag }),
        )
        .await;
        Ok(())
    }

    /// Samples the raw table of `dataset` and stores what it detects (not
    /// overriding a person's decision). Returns the detections.
    pub async fn detect_pii(&self, dataset: &str) -> Result<Vec<Detection>> {
        let sql = format!(
            "SELECT * FROM raw.\"{}\" LIMIT {SAMPLE_ROWS}",
            dataset.replace('"', "\"\"")
        );
        let batches = self.system_query.collect_internal(&sql).await?;
        let Some(schema) = batches.first().map(|b| b.schema()) else {
            return Ok(Vec::new());
        };
        let manual: BTreeSet<String> = self
            .metadata
            .classifications(Some(dataset))
            .await?
            .into_iter()
            .filter(|c| c.source == "manual")
            .map(|c| c.column)
            .collect();
        let mut found = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            if field.name().starts_with("_ingest") || manual.contains(field.name()) {
                continue;
            }
            if !matches!(
                field.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Int64
            ) {
                continue;
            }
            let mut values: Vec<String> = Vec::new();
            for b in &batches {
                let col = cast(b.column(i), &DataType::Utf8)
                    .map_err(|e| Error::Invalid(format!("sampling {dataset}: {e}")))?;
                let col = col.as_string::<i32>();
                values.extend(
                    (0..col.len())
                        .filter(|r| col.is_valid(*r))
                        .map(|r| col.value(r).to_string()),
                );
            }
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            if let Some(d) = classify_column(field.name(), &refs) {
                self.metadata
                    .put_classification(&ColumnClassification {
                        dataset: dataset.into(),
                        column: d.column.clone(),
                        tag: d.kind.tag().into(),
                        confidence: d.confidence,
                        source: "auto".into(),
                        evidence: d.evidence.clone(),
                        updated_at: chrono::Utc::now(),
                    })
                    .await?;
                found.push(d);
            }
        }
        Ok(found)
    }

    /// What the checker knows of every dataset of tarn.yaml and the catalog.
    async fn dataset_facts(&self) -> Result<Vec<DatasetFacts>> {
        let classes = self.effective_classifications().await?;
        let mut facts: BTreeMap<String, DatasetFacts> = BTreeMap::new();
        for record in self.metadata.datasets().await? {
            let f = facts.entry(record.name.clone()).or_default();
            f.name = record.name.clone();
            f.zones.insert(record.zone);
            f.owner = f.owner.take().or(record.owner);
            f.description = f.description.take().or(record.description);
            f.classification = f.classification.take().or_else(|| {
                record
                    .tags
                    .iter()
                    .find_map(|t| t.strip_prefix("classification:").map(str::to_string))
            });
        }
        for (name, ds) in &self.config.datasets {
            let f = facts.entry(name.clone()).or_default();
            f.name = name.clone();
            f.zones.insert(Zone::Raw);
            if ds.cleanse.is_some() {
                f.zones.insert(Zone::Cleansed);
            }
            if ds.curate.is_some() {
                f.zones.insert(Zone::Curated);
            }
            if ds.owner.is_some() {
                f.owner = ds.owner.clone();
            }
            if ds.description.is_some() {
                f.description = ds.description.clone();
            }
            if let Some(c) = ds
                .tags
                .iter()
                .find_map(|t| t.strip_prefix("classification:"))
            {
                f.classification = Some(c.to_string());
            }
            if let Some(c) = &ds.cleanse {
                f.cleansed_away = c.mask.keys().chain(&c.drop).cloned().collect();
            }
            for zone in [Zone::Cleansed, Zone::Curated] {
                if let Some(r) = self.config.policy(zone, name).retention {
                    f.retention_days.insert(zone, r.days);
                }
            }
        }
        for (name, f) in &mut facts {
            if let Some(cols) = classes.get(name) {
                f.columns = cols.clone();
            }
        }
        Ok(facts.into_values().collect())
    }

    /// Checks every rule of `compliance.yaml` on every dataset (SQL
    /// assertions run as admin).
    pub async fn compliance_report(&self) -> Result<Vec<RuleResult>> {
        let rules = self.compliance_rules()?;
        let facts = self.dataset_facts().await?;
        let mut out = Vec::new();
        for rule in &rules.rules {
            if let RuleKind::Sql { sql } = &rule.kind {
                out.push(rule.sql_result(self.first_value(sql).await));
                continue;
            }
            for d in &facts {
                out.extend(rule.check(d));
            }
        }
        Ok(out)
    }

    async fn first_value(&self, sql: &str) -> std::result::Result<Option<String>, String> {
        let batches = self
            .system_query
            .collect_internal(sql)
            .await
            .map_err(|e| e.to_string())?;
        let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
            return Ok(None);
        };
        let value = datafusion::arrow::util::display::array_value_to_string(batch.column(0), 0)
            .map_err(|e| e.to_string())?;
        Ok(Some(value))
    }

    /// Refuses an operation on `dataset` that a failing blocking rule
    /// concerning one of `zones` forbids.
    pub(crate) async fn check_blocking(
        &self,
        dataset: &str,
        zones: &[Zone],
        operation: &str,
    ) -> Result<()> {
        let rules = self.compliance_rules()?;
        if !rules.rules.iter().any(|r| r.blocking) {
            return Ok(());
        }
        let facts = self.dataset_facts().await?;
        let Some(d) = facts.iter().find(|f| f.name == dataset) else {
            return Ok(());
        };
        for rule in rules.rules.iter().filter(|r| r.blocking) {
            let results = match &rule.kind {
                RuleKind::Sql { sql } if rule.datasets.iter().any(|x| x == dataset) => {
                    vec![rule.sql_result(self.first_value(sql).await)]
                }
                _ => rule.check(d),
            };
            if let Some(failed) = results
                .iter()
                .find(|r| !r.passed && r.zone.is_none_or(|z| zones.contains(&z)))
            {
                let msg = format!(
                    "compliance rule `{}` blocks {operation} of {dataset}: {}",
                    failed.rule, failed.evidence
                );
                self.audit_action(
                    operation,
                    dataset,
                    false,
                    None,
                    serde_json::json!({ "rule": failed.rule, "reason": msg }),
                )
                .await;
                return Err(Error::Compliance(msg));
            }
        }
        Ok(())
    }
}
