//! CostEstimator: what a physical plan will read, table by table, before and
//! after partition pruning and file skipping, and a cost figure from that.
//!
//! "Before" is the table version's size from its Delta log. "After" is what
//! the planned scans will open: the files delta-rs kept after pruning on
//! partition values and per-file min/max statistics, with their sizes and row
//! counts from the log.
//!
//! The cost is in abstract units: one per MiB read plus one per 100 000 rows
//! scanned. It ranks plans of the same query; it is not a time.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::stats::Precision;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::{ExecutionPlan, displayable};
use serde::Serialize;

use crate::catalog::{TableId, TableSize};

/// Cost units per MiB read.
const COST_PER_MIB: f64 = 1.0;
/// Cost units per row scanned.
const COST_PER_ROW: f64 = 1.0 / 100_000.0;

/// What one table scan reads.
#[derive(Debug, Clone, Serialize)]
pub struct ScanEstimate {
    /// The table and version.
    pub table: String,
    /// The table version's files, bytes and rows.
    pub before: Size,
    /// What the scan reads after pruning.
    pub after: Size,
}

/// Files, bytes, rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Size {
    /// Data files.
    pub files: u64,
    /// Bytes.
    pub bytes: u64,
    /// Rows.
    pub rows: u64,
}

impl From<TableSize> for Size {
    fn from(s: TableSize) -> Self {
        Size {
            files: s.files,
            bytes: s.bytes,
            rows: s.rows,
        }
    }
}

/// `tarn query --explain`: the optimized plans, the scan estimates and the cost.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The optimized logical plan.
    pub logical_plan: String,
    /// The physical plan.
    pub physical_plan: String,
    /// Per table scan: before and after pruning.
    pub scans: Vec<ScanEstimate>,
    /// Estimated rows of the result, when DataFusion's statistics give one.
    pub estimated_output_rows: Option<usize>,
    /// Estimated cost (1 per MiB read + 1 per 100k rows scanned).
    pub estimated_cost: f64,
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "== Optimized logical plan ==\n{}\n", self.logical_plan)?;
        writeln!(f, "== Physical plan ==\n{}", self.physical_plan)?;
        writeln!(f, "== Scans (before -> after pruning) ==")?;
        if self.scans.is_empty() {
            writeln!(f, "(no Delta tables read)")?;
        }
        for s in &self.scans {
            writeln!(
                f,
                "{}: files {} -> {}, bytes {} -> {}, rows {} -> {}",
                s.table,
                s.before.files,
                s.after.files,
                s.before.bytes,
                s.after.bytes,
                s.before.rows,
                s.after.rows
            )?;
        }
        writeln!(f)?;
        if let Some(rows) = self.estimated_output_rows {
            writeln!(f, "Estimated output rows: {rows}")?;
        }
        write!(
            f,
            "Estimated cost: {:.2} (1 per MiB read + 1 per 100k rows scanned)",
            self.estimated_cost
        )
    }
}

/// Estimates what `physical` reads of each of `tables`.
pub(crate) fn explain(
    optimized: &LogicalPlan,
    physical: &Arc<dyn ExecutionPlan>,
    tables: &[(TableId, TableSize)],
) -> Explanation {
    let files = scanned_files(physical);
    let mut scans = Vec::new();
    let mut cost = 0.0;
    for (id, size) in tables {
        let prefix = table_prefix(&id.url);
        let mut after = Size::default();
        for f in files.iter().filter(|f| f.path.starts_with(&prefix)) {
            after.files += 1;
            after.bytes += f.bytes;
            after.rows += f.rows;
        }
        cost += after.bytes as f64 / (1u64 << 20) as f64 * COST_PER_MIB
            + after.rows as f64 * COST_PER_ROW;
        scans.push(ScanEstimate {
            table: id.to_string(),
            before: (*size).into(),
            after,
        });
    }
    let estimated_output_rows = StatisticsContext::new()
        .compute(physical.as_ref(), &StatisticsArgs::new())
        .ok()
        .and_then(|s| match s.num_rows {
            Precision::Exact(n) | Precision::Inexact(n) => Some(n),
            Precision::Absent => None,
        });
    Explanation {
        logical_plan: optimized.display_indent().to_string(),
        physical_plan: displayable(physical.as_ref()).indent(true).to_string(),
        scans,
        estimated_output_rows,
        estimated_cost: cost,
    }
}

/// The object-store path prefix of the files of the table at `url`.
fn table_prefix(url: &str) -> String {
    let path = url::Url::parse(url)
        .map(|u| u.path().to_string())
        .unwrap_or_default();
    let path = percent_decode(path.trim_matches('/'));
    format!("{path}/")
}

fn percent_decode(s: &str) -> String {
    object_store::path::Path::from_url_path(s)
        .map(|p| p.to_string())
        .unwrap_or_else(|_| s.to_string())
}

struct ScannedFile {
    path: String,
    bytes: u64,
    rows: u64,
}

/// Every distinct file the plan's file scans open (a file split into byte
/// ranges across partitions counts once).
fn scanned_files(plan: &Arc<dyn ExecutionPlan>) -> Vec<ScannedFile> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut stack = vec![plan.clone()];
    while let Some(node) = stack.pop() {
        if let Some(exec) = node.downcast_ref::<DataSourceExec>()
            && let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>()
        {
            for f in config.file_groups.iter().flat_map(|g| g.iter()) {
                let path = f.object_meta.location.to_string();
                if !seen.insert(path.clone()) {
                    continue;
                }
                let rows = f
                    .statistics
                    .as_ref()
                    .and_then(|s| match s.num_rows {
                        Precision::Exact(n) | Precision::Inexact(n) => Some(n as u64),
                        Precision::Absent => None,
                    })
                    .unwrap_or(0);
                out.push(ScannedFile {
                    path,
                    bytes: f.object_meta.size,
                    rows,
                });
            }
        }
        stack.extend(node.children().into_iter().cloned());
    }
    out
}
