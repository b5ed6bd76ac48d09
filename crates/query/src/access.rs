//! Access control inside the query engine, by plan rewriting.
//!
//! For a principal other than an admin, every zone table is handed to the
//! planner as a view over the Delta table: `Projection(masks) ← Filter(row
//! filters) ← TableScan`. DataFusion inlines the view where the table is
//! referenced, so SQL, structured queries, joins, subqueries, CTEs, EXPLAIN,
//! time travel and marts all plan against the restricted table, and the cache
//! keys the rewritten plan. A column the principal may not read is planned as
//! a marker; if the optimized plan still uses a marker, the query is refused
//! with the column named. A table it may not read at all is refused when it is
//! resolved. Nothing is filtered silently: a denial is an error. A security
//! barrier above the row filter keeps the query's own predicates from ever
//! running on rows the filter hides.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, ScalarValue, TableReference};
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::registry::FunctionRegistry;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility, lit,
};
use sha2::{Digest, Sha256};
use tarn_governance::access::{ColumnAccess, MaskKind, PrincipalPolicy, TableAccess};

use crate::catalog::ZoneTable;
use crate::error::Error;

/// The marker planned in place of a column the principal may not read.
const DENIED: &str = "tarn_denied_column";
/// The function that masks a column.
const MASK: &str = "tarn_mask";
/// Row filters: the reader's attribute `principal_attr('region')`.
pub const PRINCIPAL_ATTR: &str = "principal_attr";
/// Row filters: the reader's name.
pub const CURRENT_PRINCIPAL: &str = "current_principal";

/// A principal's policy, with what enforcing it needs.
#[derive(Debug)]
pub struct AccessContext {
    policy: Arc<PrincipalPolicy>,
    salt: String,
    /// Parses mask and row-filter expressions (knows the principal functions).
    parser: SessionState,
}

impl AccessContext {
    /// Enforces `policy`; `hash` masks are salted with `salt`.
    pub fn new(policy: PrincipalPolicy, salt: String, base: &SessionState) -> Self {
        let mut parser = base.clone();
        for name in [PRINCIPAL_ATTR, CURRENT_PRINCIPAL] {
            parser
                .register_udf(Arc::new(ScalarUDF::from(Unsubstituted::new(name))))
                .expect("registering a UDF does not fail");
        }
        Self {
            policy: Arc::new(policy),
            salt,
            parser,
        }
    }

    /// The policy enforced.
    pub fn policy(&self) -> &PrincipalPolicy {
        &self.policy
    }

    /// `table` as this principal may see it under the name `reference`: the
    /// table itself, a restricting view, or an error naming the missing
    /// privilege.
    pub fn secure(
        &self,
        table: ZoneTable,
        reference: TableReference,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let (zone, dataset) = (table.id().zone, table.id().name.clone());
        let (columns, masks, row_filters) = match self.policy.table(zone, &dataset) {
            TableAccess::Unrestricted => return Ok(Arc::new(table)),
            TableAccess::Denied(msg) => return Err(denied(msg)),
            TableAccess::Restricted {
                columns,
                masks,
                row_filters,
            } => (columns, masks, row_filters),
        };
        let schema = table.schema();
        let mut plan =
            LogicalPlanBuilder::scan(reference.clone(), provider_as_source(Arc::new(table)), None)?;
        let df_schema = plan.schema().clone();
        for predicate in &row_filters {
            let expr = self.parse(predicate, &df_schema).map_err(|e| {
                DataFusionError::Plan(format!(
                    "the row filter `{predicate}` on {zone}/{dataset} is invalid: {}",
                    e.find_root()
                ))
            })?;
            plan = plan.filter(self.substitute(expr, predicate)?)?;
        }
        let readable = |name: &str| match &columns {
            ColumnAccess::All => true,
            ColumnAccess::Only(set) => set.contains(name),
        };
        let exprs = schema
            .fields()
            .iter()
            .map(|f| {
                let name = f.name();
                let expr = if !readable(name) {
                    denied_column(f, &format!("{zone}/{dataset}.{name}"), &self.policy.name)
                } else if let Some(mask) = masks.get(name.as_str()) {
                    self.mask(f, *mask)
                } else {
                    Expr::Column(datafusion::common::Column::new(
                        Some(reference.clone()),
                        name,
                    ))
                };
                Ok(expr.alias(name))
            })
            .collect::<DfResult<Vec<_>>>()?;
        // Predicates of the query stay above the filter (see `barrier`).
        let plan = LogicalPlanBuilder::from(crate::barrier::barrier(plan.build()?))
            .project(exprs)?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }

    fn parse(&self, sql: &str, schema: &DFSchema) -> DfResult<Expr> {
        self.parser.create_logical_expr(sql, schema)
    }

    /// Replaces `principal_attr('k')` and `current_principal()` with the
    /// reader's values.
    fn substitute(&self, expr: Expr, predicate: &str) -> DfResult<Expr> {
        let policy = &self.policy;
        expr.transform_up(|e| {
            let Expr::ScalarFunction(f) = &e else {
                return Ok(Transformed::no(e));
            };
            match f.func.name() {
                CURRENT_PRINCIPAL => Ok(Transformed::yes(lit(policy.name.clone()))),
                PRINCIPAL_ATTR => {
                    let key = match f.args.as_slice() {
                        [
                            Expr::Literal(
                                ScalarValue::Utf8(Some(k))
                                | ScalarValue::Utf8View(Some(k))
                                | ScalarValue::LargeUtf8(Some(k)),
                                _,
                            ),
                        ] => k.clone(),
                        _ => {
                            return Err(DataFusionError::Plan(format!(
                                "row filter `{predicate}`: principal_attr takes one text \
                                 literal, e.g. principal_attr('region')"
                            )));
                        }
                    };
                    let value = policy.attributes.get(&key).ok_or_else(|| {
                        denied(format!(
                            "permission denied: a row filter needs the attribute `{key}` of \
                             `{}`, which it does not have (set it with `tarn principal add {} \
                             --attr {key}=VALUE`)",
                            policy.name, policy.name
                        ))
                    })?;
                    Ok(Transformed::yes(lit(value.clone())))
                }
                _ => Ok(Transformed::no(e)),
            }
        })
        .map(|t| t.data)
    }

    /// The masked form of column `f`.
    fn mask(&self, f: &Field, mask: MaskKind) -> Expr {
        let udf = ScalarUDF::from(MaskColumn {
            signature: Signature::any(1, Volatility::Immutable),
            mask,
            salt: self.salt.clone(),
        });
        udf.call(vec![Expr::Column(
            datafusion::common::Column::new_unqualified(f.name()),
        )])
    }
}

/// The error of a denied access, recognizable after DataFusion wraps it.
fn denied(msg: String) -> DataFusionError {
    DataFusionError::External(Box::new(Error::PermissionDenied(msg)))
}

/// The permission-denied message inside a DataFusion error, if it is one.
pub(crate) fn denial(e: &DataFusionError) -> Option<String> {
    match e.find_root() {
        DataFusionError::External(inner) => match inner.downcast_ref::<Error>() {
            Some(Error::PermissionDenied(msg)) => Some(msg.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn denied_column(f: &Field, column: &str, principal: &str) -> Expr {
    let message = format!(
        "permission denied: `{principal}` lacks SELECT on column {column} \
         (select only the columns it may read, or grant it with \
         `tarn grant select {} --columns {} --to {principal}`)",
        column.split('.').next().unwrap_or(column),
        f.name()
    );
    let udf = ScalarUDF::from(DeniedColumn {
        signature: Signature::any(1, Volatility::Immutable),
        message,
    });
    // The column is the argument so the marker is never constant-folded;
    // it is only read if the query uses it, and then the query is refused.
    udf.call(vec![Expr::Column(
        datafusion::common::Column::new_unqualified(f.name()),
    )])
}

/// Refuses `plan` (optimized) if it still uses a column the principal may
/// not read.
pub(crate) fn check_denied_columns(plan: &LogicalPlan) -> crate::Result<()> {
    let mut found = None;
    plan.apply_with_subqueries(|node| {
        for e in node.expressions() {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && let Some(d) = f.func.inner().downcast_ref::<DeniedColumn>()
                {
                    found = Some(d.message.clone());
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
        }
        Ok(if found.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    match found {
        Some(msg) => Err(Error::PermissionDenied(msg)),
        None => Ok(()),
    }
}

/// A column mask. A function the optimizer cannot see into, so a predicate
/// on a masked column is always evaluated on the masked values (DataFusion
/// rewrites a `CASE` mask under a comparison in ways that let null values
/// through a filter).
#[derive(Debug, PartialEq, Eq, Hash)]
struct MaskColumn {
    signature: Signature,
    mask: MaskKind,
    salt: String,
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

impl ScalarUDFImpl for MaskColumn {
    fn name(&self) -> &str {
        MASK
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        Ok(match self.mask {
            MaskKind::Null => args[0].clone(),
            MaskKind::Redact if !is_text(&args[0]) => args[0].clone(),
            _ => DataType::Utf8,
        })
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let values = args.args[0].to_array(args.number_rows)?;
        let out: ArrayRef = match self.mask {
            MaskKind::Null => new_null_array(values.data_type(), values.len()),
            MaskKind::Redact if !is_text(values.data_type()) => {
                new_null_array(values.data_type(), values.len())
            }
            mask => {
                let text = cast(&values, &DataType::Utf8)?;
                let text = text.as_string::<i32>();
                Arc::new(
                    text.iter()
                        .map(|v| v.map(|v| apply_mask(mask, &self.salt, v)))
                        .collect::<StringArray>(),
                )
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// `***`, the salted SHA-256 hex digest, or all but the last N characters
/// as `*`.
fn apply_mask(mask: MaskKind, salt: &str, value: &str) -> String {
    match mask {
        MaskKind::Hash => {
            let digest = Sha256::new()
                .chain_update(salt.as_bytes())
                .chain_update(value.as_bytes())
                .finalize();
            digest.iter().map(|b| format!("{b:02x}")).collect()
        }
        MaskKind::Partial(n) => {
            let chars: Vec<char> = value.chars().collect();
            let keep = (n as usize).min(chars.len());
            let hidden = chars.len() - keep;
            "*".repeat(hidden) + &chars[hidden..].iter().collect::<String>()
        }
        MaskKind::Redact | MaskKind::Null => "***".into(),
    }
}

/// Stands for a column the principal may not read; fails if ever evaluated.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DeniedColumn {
    signature: Signature,
    message: String,
}

impl ScalarUDFImpl for DeniedColumn {
    fn name(&self) -> &str {
        DENIED
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        Ok(args[0].clone())
    }
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Err(denied(self.message.clone()))
    }
}

/// `principal_attr` / `current_principal` as the parser sees them; they are
/// always replaced by values before a plan runs.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Unsubstituted {
    name: &'static str,
    signature: Signature,
}

impl Unsubstituted {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Unsubstituted {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Err(DataFusionError::Plan(format!(
            "{}() is only available in row filters",
            self.name
        )))
    }
}

/// The columns each zone table scan of an optimized plan reads, as
/// `zone/dataset.column`.
pub(crate) fn columns_read(plan: &LogicalPlan) -> Vec<String> {
    let mut out: BTreeMap<String, ()> = BTreeMap::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(p) = datafusion::datasource::source_as_provider(&scan.source)
            && let Some(t) = p.downcast_ref::<ZoneTable>()
        {
            let id = t.id();
            for f in scan.projected_schema.fields() {
                out.insert(format!("{}/{}.{}", id.zone, id.name, f.name()), ());
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out.into_keys().collect()
}
