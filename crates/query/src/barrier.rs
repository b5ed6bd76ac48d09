//! A security barrier between a restricted table's row filter and the
//! query above it.
//!
//! Without it, DataFusion merges a query's predicates with the row filter
//! (and pushes both into the scan), so a predicate that fails on some value
//! (`1 / (id - 2) = 0`) would run on rows the filter hides, and its error
//! would tell that such a row exists. The barrier passes rows through
//! unchanged, but no predicate is pushed below it, in the logical plan or
//! the physical one: the query's predicates only ever see rows the filter
//! let through (what PostgreSQL calls a `security_barrier` view), except
//! predicates that cannot fail ([`SafePredicatePushdown`]), which still
//! prune files and partitions.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchemaRef, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::logical_expr::{Filter, Operator, Projection};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

/// The logical barrier: `input`, unchanged.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Hash)]
struct Barrier {
    input: LogicalPlan,
}

/// `input` behind a security barrier.
pub(crate) fn barrier(input: LogicalPlan) -> LogicalPlan {
    LogicalPlan::Extension(Extension {
        node: Arc::new(Barrier { input }),
    })
}

impl UserDefinedLogicalNodeCore for Barrier {
    fn name(&self) -> &str {
        "SecurityBarrier"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    // The default of `prevent_predicate_push_down_columns` is every column:
    // no predicate passes the barrier.

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SecurityBarrier")
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        Ok(Self {
            input: inputs.swap_remove(0),
        })
    }

    /// Columns nobody reads above are not read below either.
    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        Some(vec![output_columns.to_vec()])
    }
}

/// Plans [`Barrier`] nodes as [`BarrierExec`], everything else as DataFusion does.
#[derive(Debug)]
pub(crate) struct BarrierQueryPlanner;

#[async_trait]
impl QueryPlanner for BarrierQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(BarrierPlanner)])
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}

struct BarrierPlanner;

#[async_trait]
impl ExtensionPlanner for BarrierPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        if node.as_any().downcast_ref::<Barrier>().is_none() {
            return Ok(None);
        }
        Ok(Some(Arc::new(BarrierExec::new(physical_inputs[0].clone()))))
    }
}

/// The physical barrier: streams its input through; takes part in no
/// filter pushdown (the default of every `ExecutionPlan`).
#[derive(Debug)]
struct BarrierExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl BarrierExec {
    fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        Self {
            properties: input.properties().clone(),
            input,
        }
    }
}

impl DisplayAs for BarrierExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SecurityBarrierExec")
    }
}

impl ExecutionPlan for BarrierExec {
    fn name(&self) -> &str {
        "SecurityBarrierExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::new(children.swap_remove(0))))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}

/// Moves the conjuncts of a query's filter that cannot fail, and read only
/// unmasked columns, below the barrier, so they prune files and partitions
/// with the row filter. Comparisons, `IN`, `BETWEEN`, `LIKE` with a literal
/// pattern, null tests and boolean logic over columns and literals cannot
/// raise an error whatever the row holds, so running them on hidden rows
/// tells nothing; anything else (arithmetic, casts of columns, functions,
/// masked columns) stays above.
#[derive(Debug)]
pub(crate) struct SafePredicatePushdown;

impl OptimizerRule for SafePredicatePushdown {
    fn name(&self) -> &str {
        "tarn_safe_predicate_pushdown"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Filter(filter) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let (projection, below) = match filter.input.as_ref() {
            LogicalPlan::Projection(p) => (Some(p), p.input.as_ref()),
            other => (None, other),
        };
        let Some(guarded) = guarded_input(below) else {
            return Ok(Transformed::no(plan));
        };
        let (mut safe, mut rest) = (Vec::new(), Vec::new());
        for c in split_conjunction_owned(filter.predicate.clone()) {
            match through_projection(&c, projection) {
                Some(e) if is_safe(&e) => safe.push(e),
                _ => rest.push(c),
            }
        }
        let Some(safe) = conjunction(safe) else {
            return Ok(Transformed::no(plan));
        };
        let inner = LogicalPlan::Filter(Filter::try_new(safe, Arc::new(guarded.clone()))?);
        let mut input = barrier(inner);
        if let Some(p) = projection {
            input = LogicalPlan::Projection(Projection::try_new_with_schema(
                p.expr.clone(),
                Arc::new(input),
                p.schema.clone(),
            )?);
        }
        Ok(Transformed::yes(match conjunction(rest) {
            Some(pred) => LogicalPlan::Filter(Filter::try_new(pred, Arc::new(input))?),
            None => input,
        }))
    }
}

/// The plan a barrier guards, if `plan` is a barrier.
fn guarded_input(plan: &LogicalPlan) -> Option<&LogicalPlan> {
    match plan {
        LogicalPlan::Extension(e) => e.node.as_any().downcast_ref::<Barrier>().map(|b| &b.input),
        _ => None,
    }
}

/// `e` with each column replaced by what `projection` computes it from, if
/// every one is a plain column (not a mask or a denied-column marker).
fn through_projection(e: &Expr, projection: Option<&Projection>) -> Option<Expr> {
    let Some(p) = projection else {
        return Some(e.clone());
    };
    let mut ok = true;
    let out = e
        .clone()
        .transform(|e| {
            let Expr::Column(c) = &e else {
                return Ok(Transformed::no(e));
            };
            let source = p
                .schema
                .index_of_column(c)
                .ok()
                .map(|i| p.expr[i].clone().unalias());
            match source {
                Some(col @ Expr::Column(_)) => Ok(Transformed::yes(col)),
                _ => {
                    ok = false;
                    Ok(Transformed::no(e))
                }
            }
        })
        .ok()?
        .data;
    ok.then_some(out)
}

/// Whether `e` cannot raise an error, whatever the row holds.
fn is_safe(e: &Expr) -> bool {
    match e {
        Expr::Column(_) | Expr::Literal(..) => true,
        Expr::Alias(a) => is_safe(&a.expr),
        Expr::BinaryExpr(b) => {
            matches!(
                b.op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::And
                    | Operator::Or
                    | Operator::IsDistinctFrom
                    | Operator::IsNotDistinctFrom
            ) && is_safe(&b.left)
                && is_safe(&b.right)
        }
        Expr::Not(e)
        | Expr::IsNull(e)
        | Expr::IsNotNull(e)
        | Expr::IsTrue(e)
        | Expr::IsFalse(e)
        | Expr::IsNotTrue(e)
        | Expr::IsNotFalse(e)
        | Expr::IsUnknown(e)
        | Expr::IsNotUnknown(e) => is_safe(e),
        Expr::InList(l) => is_safe(&l.expr) && l.list.iter().all(is_safe),
        Expr::Between(b) => is_safe(&b.expr) && is_safe(&b.low) && is_safe(&b.high),
        Expr::Like(l) => is_safe(&l.expr) && matches!(*l.pattern, Expr::Literal(..)),
        // A cast of a constant fails for every row or none.
        Expr::Cast(c) => matches!(*c.expr, Expr::Literal(..)),
        Expr::TryCast(c) => is_safe(&c.expr),
        _ => false,
    }
}
