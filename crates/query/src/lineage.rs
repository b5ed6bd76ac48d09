//! Column lineage of a query: for each output column, the zone-table columns
//! its value is computed from, traced through the logical plan.

use std::collections::BTreeSet;

use datafusion::common::Column;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, LogicalPlan};

use crate::catalog::ZoneTable;

/// For each output column of `plan`, the `zone/table.column` inputs it
/// depends on (empty for a constant or a `count(*)`).
pub fn column_lineage(plan: &LogicalPlan) -> Vec<(String, Vec<String>)> {
    plan.schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut inputs = BTreeSet::new();
            trace_index(plan, i, &mut inputs);
            (f.name().clone(), inputs.into_iter().collect())
        })
        .collect()
}

/// Traces output column `i` of `plan`.
fn trace_index(plan: &LogicalPlan, i: usize, out: &mut BTreeSet<String>) {
    match plan {
        LogicalPlan::Projection(p) => {
            if let Some(e) = p.expr.get(i) {
                trace_expr(&p.input, e, out);
            }
        }
        LogicalPlan::Aggregate(a) => {
            let exprs: Vec<&Expr> = a.group_expr.iter().chain(&a.aggr_expr).collect();
            if let Some(e) = exprs.get(i) {
                trace_expr(&a.input, e, out);
            }
        }
        LogicalPlan::Window(w) => {
            // The input's columns, then one per window expression.
            let n = w.input.schema().fields().len();
            if i < n {
                trace_index(&w.input, i, out);
            } else if let Some(e) = w.window_expr.get(i - n) {
                trace_expr(&w.input, e, out);
            }
        }
        LogicalPlan::TableScan(scan) => {
            let Some(name) = scan.projected_schema.fields().get(i).map(|f| f.name()) else {
                return;
            };
            if let Some(t) = source_as_provider(&scan.source)
                .ok()
                .and_then(|p| p.downcast_ref::<ZoneTable>().map(|t| t.id().clone()))
            {
                out.insert(format!("{}/{}.{name}", t.zone, t.name));
            }
        }
        LogicalPlan::Join(_) | LogicalPlan::Union(_) => {
            // Outputs of a join are its inputs' columns side by side; of a
            // union, the same position in every input.
            let (field_q, field) = plan.schema().qualified_field(i);
            let column = Column::new(field_q.cloned(), field.name());
            for input in plan.inputs() {
                if let LogicalPlan::Union(_) = plan {
                    trace_index(input, i, out);
                } else if let Ok(j) = input.schema().index_of_column(&column) {
                    trace_index(input, j, out);
                }
            }
        }
        other => {
            // Filter, Sort, Limit, SubqueryAlias, Distinct, Repartition, ...:
            // the same columns as their (single) input.
            if let [input] = other.inputs()[..] {
                trace_index(input, i, out);
            }
        }
    }
}

/// Traces every column `expr` reads in `input`.
fn trace_expr(input: &LogicalPlan, expr: &Expr, out: &mut BTreeSet<String>) {
    for c in expr.column_refs() {
        if let Ok(j) = input.schema().index_of_column(c) {
            trace_index(input, j, out);
        }
    }
}
