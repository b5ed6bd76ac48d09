//! The LineageTracker as the lake offers it: lineage graphs from the facts
//! every job run records, and OpenLineage RunEvents for every run.
//!
//! Events are sent when a run ends: START (with the run's start time) then
//! COMPLETE or FAIL, to the file and/or URL of `governance.openlineage`. A
//! destination that cannot be reached is logged, never fails the run.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use tarn_governance::lineage_graph::{Direction, LineageGraph};
use tarn_governance::openlineage::{Assertion, Emitter, EventDataset, EventType, RunEvent};
use tarn_governance::{LineageFact, RunStatus};
use tarn_zones::{StageResult, StageStatus};

use crate::DataLake;
use crate::error::{Error, Result};

/// The namespace used when none is configured.
const DEFAULT_NAMESPACE: &str = "tarn";

/// What one finished run reports to OpenLineage.
struct FinishedRun {
    run_id: String,
    job: String,
    started: DateTime<Utc>,
    ended: DateTime<Utc>,
    inputs: Vec<String>,
    /// Rows read from the inputs, when the run counted them in one number.
    rows_in: Option<i64>,
    outputs: Vec<(String, Option<i64>)>,
    error: Option<String>,
    dataset: String,
}

impl DataLake {
    /// The lineage graph around `table` (`zone/dataset`).
    pub async fn lineage(
        &self,
        table: &str,
        direction: Direction,
        depth: Option<usize>,
    ) -> Result<LineageGraph> {
        let facts = self.metadata.lineage_facts().await?;
        let known = facts
            .iter()
            .flat_map(|f| f.inputs.iter().chain(&f.outputs))
            .any(|t| t.table == table);
        if !known {
            let mut tables: Vec<&str> = facts
                .iter()
                .flat_map(|f| f.outputs.iter().map(|t| t.table.as_str()))
                .collect();
            tables.sort_unstable();
            tables.dedup();
            return Err(Error::Invalid(format!(
                "no lineage recorded for `{table}`; tables with lineage: {}",
                if tables.is_empty() {
                    "none yet (ingest or process something first)".to_string()
                } else {
                    tables.join(", ")
                }
            )));
        }
        Ok(LineageGraph::build(&facts, table, direction, depth))
    }

    fn emitter(&self) -> Option<(Emitter, String)> {
        let cfg = &self.config.governance.openlineage;
        let url = std::env::var("OPENLINEAGE_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| cfg.url.clone());
        let file: Option<PathBuf> = cfg.file.as_deref().map(|f| self.config.resolve_path(f));
        let namespace = std::env::var("OPENLINEAGE_NAMESPACE")
            .ok()
            .filter(|n| !n.is_empty())
            .or_else(|| cfg.namespace.clone())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.into());
        let emitter = Emitter::new(file, url);
        emitter.is_enabled().then_some((emitter, namespace))
    }

    /// Emits the events of the newest ingest run of `dataset`, if it
    /// started at or after `since` (an ingest refused before it began has no run).
    pub(crate) async fn emit_ingest_run(&self, dataset: &str, since: DateTime<Utc>) {
        if self.emitter().is_none() {
            return;
        }
        let runs = match self.metadata.runs(dataset, 1).await {
            Ok(r) => r,
            Err(e) => return tracing::warn!("openlineage: {e}"),
        };
        let Some(run) = runs.into_iter().next() else {
            return;
        };
        if run.status == RunStatus::Skipped || run.started_at < since {
            return;
        }
        let fact = self.facts().await.into_iter().find(|f| f.run_id == run.id);
        let finished = FinishedRun {
            job: format!("ingest:{dataset}"),
            started: run.started_at,
            ended: run.ended_at.unwrap_or_else(Utc::now),
            inputs: match &fact {
                Some(f) => f.inputs.iter().map(|t| t.table.clone()).collect(),
                None => run
                    .source
                    .strip_prefix("file:")
                    .map(|s| s.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
            },
            rows_in: None,
            outputs: vec![(format!("raw/{dataset}"), run.delta_version)],
            error: run.error.clone(),
            dataset: dataset.to_string(),
            run_id: run.id,
        };
        self.emit(finished, fact, Some(run.rows_written)).await;
    }

    /// Emits the events of each stage that ran.
    pub(crate) async fn emit_stage_runs(&self, dataset: &str, stages: &[StageResult]) {
        if self.emitter().is_none() {
            return;
        }
        let facts = self.facts().await;
        for s in stages.iter().filter(|s| s.status != StageStatus::Skipped) {
            let ended = Utc::now();
            let finished = FinishedRun {
                run_id: s.run_id.clone(),
                job: format!(
                    "{}:{}",
                    s.stage,
                    s.table.rsplit('/').next().unwrap_or(&s.table)
                ),
                started: ended - chrono::Duration::milliseconds(s.duration_ms as i64),
                ended,
                inputs: s.input_versions.keys().cloned().collect(),
                // Cleanse and curate read one upstream table (lookups aside).
                rows_in: (s.stage != "consume").then_some(s.rows_in as i64),
                outputs: vec![(s.table.clone(), s.version)],
                error: s.error.clone(),
                dataset: dataset.to_string(),
            };
            let fact = facts.iter().find(|f| f.run_id == s.run_id).cloned();
            self.emit(finished, fact, Some(s.rows_out as i64)).await;
        }
    }

    /// Every lineage fact; none if the store cannot be read (events are
    /// best effort).
    async fn facts(&self) -> Vec<LineageFact> {
        self.metadata.lineage_facts().await.unwrap_or_else(|e| {
            tracing::warn!("openlineage: {e}");
            Vec::new()
        })
    }

    /// The columns of a zone table as (name, type), for the schema facet.
    async fn fields_of(&self, table: &str) -> Vec<(String, String)> {
        let Some((zone, name)) = table.split_once('/') else {
            return Vec::new();
        };
        let sql = format!(
            "SELECT * FROM {zone}.\"{}\" LIMIT 0",
            name.replace('"', "\"\"")
        );
        match self.system_query.without_audit().plan_sql(&sql).await {
            Ok(plan) => plan
                .schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().to_string()))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    async fn emit(&self, run: FinishedRun, fact: Option<LineageFact>, rows_out: Option<i64>) {
        let Some((emitter, namespace)) = self.emitter() else {
            return;
        };
        let quality: Vec<Assertion> = self
            .metadata
            .quality_results(&run.dataset, 1)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|q| q.run_id == run.run_id)
            .map(|q| Assertion {
                assertion: format!("{}:{}", q.check, q.expectation),
                success: q.passed,
                column: None,
            })
            .collect();
        let mut inputs = Vec::new();
        let upstream = run.job.split_once(':').map(|(stage, d)| {
            let zone = if stage == "cleanse" {
                "raw"
            } else {
                "cleansed"
            };
            format!("{zone}/{d}")
        });
        for name in &run.inputs {
            inputs.push(EventDataset {
                fields: self.fields_of(name).await,
                row_count: run
                    .rows_in
                    .filter(|_| upstream.as_deref() == Some(name.as_str())),
                name: name.clone(),
                ..Default::default()
            });
        }
        let mut outputs = Vec::new();
        for (name, _) in &run.outputs {
            outputs.push(EventDataset {
                fields: self.fields_of(name).await,
                name: name.clone(),
                row_count: rows_out.filter(|_| run.error.is_none()),
                quality: quality.clone(),
                column_lineage: fact.as_ref().map(|f| f.columns.clone()).unwrap_or_default(),
                ..Default::default()
            });
        }
        let start = RunEvent {
            event_type: EventType::Start,
            event_time: run.started,
            run_id: run.run_id.clone(),
            namespace,
            job: run.job.clone(),
            inputs: inputs.clone(),
            outputs: outputs
                .iter()
                .map(|o| EventDataset {
                    name: o.name.clone(),
                    ..Default::default()
                })
                .collect(),
            error: None,
        };
        let end = RunEvent {
            event_type: if run.error.is_some() {
                EventType::Fail
            } else {
                EventType::Complete
            },
            event_time: run.ended,
            inputs,
            outputs,
            error: run.error.clone(),
            ..start.clone()
        };
        for event in [start, end] {
            if let Err(e) = emitter.emit(&event).await {
                tracing::warn!(job = %run.job, "openlineage: {e}");
                return;
            }
        }
    }
}
