//! The seed's structured [`Query`], built directly as a DataFusion
//! `LogicalPlan` (never as SQL text).
//!
//! ```json
//! {"select": ["user_id", "event_type", "timestamp"],
//!  "from_path": "curated/user_events",
//!  "where": {"event_type": "purchase", "amount": {">": 10},
//!            "country": {"in": ["DE", "FR"]}, "coupon": {"is_null": true}},
//!  "partition_date": "2024-02-10",
//!  "order_by": ["timestamp desc"], "limit": 100}
//! ```

use std::collections::BTreeMap;
use std::fmt;

use chrono::NaiveDate;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, SortExpr, col, lit};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tarn_common::Zone;

use crate::error::{Error, Result};

/// The column raw tables are partitioned by when a dataset has a partition key.
pub const PARTITION_DATE_COLUMN: &str = "_partition_date";

/// A structured query over one table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// Columns to return; empty for all.
    #[serde(default)]
    pub select: Vec<String>,
    /// The table: `zone/dataset` (or `zone.dataset`), optionally with a
    /// time-travel suffix (`@v3`, `@2024-02-10T00:00:00Z`).
    pub from_path: String,
    /// Conditions per column, all of which must hold.
    #[serde(default, rename = "where")]
    pub filters: BTreeMap<String, Condition>,
    /// Only rows of this day or range of days (by the table's partition date).
    #[serde(default)]
    pub partition_date: Option<PartitionDate>,
    /// `column` or `column desc`, in order of precedence.
    #[serde(default)]
    pub order_by: Vec<String>,
    /// At most this many rows.
    #[serde(default)]
    pub limit: Option<usize>,
}

impl Query {
    /// A query returning every row and column of `from_path`.
    pub fn from(from_path: impl Into<String>) -> Self {
        Self {
            from_path: from_path.into(),
            ..Default::default()
        }
    }

    /// Returns only `columns`.
    pub fn select<I: IntoIterator<Item = S>, S: Into<String>>(mut self, columns: I) -> Self {
        self.select = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a condition on `column` (conditions on one column are combined).
    pub fn filter(mut self, column: impl Into<String>, predicate: Predicate) -> Self {
        self.filters
            .entry(column.into())
            .or_default()
            .0
            .push(predicate);
        self
    }

    /// Only rows of `date`'s partition.
    pub fn partition_date(mut self, date: NaiveDate) -> Self {
        self.partition_date = Some(PartitionDate::Day(date));
        self
    }

    /// Orders by `column` (`column desc` for descending).
    pub fn order_by(mut self, column: impl Into<String>) -> Self {
        self.order_by.push(column.into());
        self
    }

    /// At most `n` rows.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// The zone and table name (with any time-travel suffix) of `from_path`.
    pub fn table(&self) -> Result<(Zone, &str)> {
        let (zone, name) = self.from_path.split_once(['/', '.']).ok_or_else(|| {
            Error::Invalid(format!(
                "from_path `{}` must be `zone/dataset`, e.g. `curated/user_events`",
                self.from_path
            ))
        })?;
        let zone = zone
            .parse::<Zone>()
            .map_err(|e| Error::Invalid(format!("from_path `{}`: {e}", self.from_path)))?;
        Ok((zone, name))
    }
}

/// Days to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PartitionDate {
    /// One day, `"2024-02-10"`.
    Day(NaiveDate),
    /// Days from `from` to `to`, both included: `{"from": …, "to": …}`.
    Range {
        /// First day.
        from: NaiveDate,
        /// Last day.
        to: NaiveDate,
    },
}

/// One comparison on a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// `=`
    Eq(Value),
    /// `!=`
    Ne(Value),
    /// `>`
    Gt(Value),
    /// `>=`
    Ge(Value),
    /// `<`
    Lt(Value),
    /// `<=`
    Le(Value),
    /// `in`: one of the values.
    In(Vec<Value>),
    /// `not_in`: none of the values.
    NotIn(Vec<Value>),
    /// `between`: from `.0` to `.1`, both included.
    Between(Value, Value),
    /// `is_null: true` (or `false` for "is not null").
    IsNull(bool),
    /// `like`: an SQL LIKE pattern.
    Like(String),
}

/// The conditions on one column: a bare value means equality; an object maps
/// operators (`=`, `!=`, `>`, `>=`, `<`, `<=`, `in`, `not_in`, `between`,
/// `is_null`, `like`) to operands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub struct Condition(pub Vec<Predicate>);

impl TryFrom<Value> for Condition {
    type Error = String;

    fn try_from(v: Value) -> std::result::Result<Self, String> {
        let Value::Object(ops) = v else {
            return Ok(Condition(vec![Predicate::Eq(v)]));
        };
        let list = |op: &str, v: Value| match v {
            Value::Array(items) => Ok(items),
            other => Err(format!("`{op}` takes a list, not {other}")),
        };
        let mut out = Vec::new();
        for (op, v) in ops {
            out.push(match op.as_str() {
                "=" | "==" | "eq" => Predicate::Eq(v),
                "!=" | "<>" | "ne" => Predicate::Ne(v),
                ">" | "gt" => Predicate::Gt(v),
                ">=" | "ge" | "gte" => Predicate::Ge(v),
                "<" | "lt" => Predicate::Lt(v),
                "<=" | "le" | "lte" => Predicate::Le(v),
                "in" => Predicate::In(list(&op, v)?),
                "not_in" => Predicate::NotIn(list(&op, v)?),
                "between" => match list(&op, v)?.as_slice() {
                    [lo, hi] => Predicate::Between(lo.clone(), hi.clone()),
                    _ => return Err("`between` takes [low, high]".into()),
                },
                "is_null" => match v {
                    Value::Bool(b) => Predicate::IsNull(b),
                    other => return Err(format!("`is_null` takes true or false, not {other}")),
                },
                "like" => match v {
                    Value::String(s) => Predicate::Like(s),
                    other => return Err(format!("`like` takes a pattern string, not {other}")),
                },
                other => {
                    return Err(format!(
                        "unknown operator `{other}` (expected =, !=, >, >=, <, <=, in, not_in, \
                         between, is_null or like)"
                    ));
                }
            });
        }
        Ok(Condition(out))
    }
}

impl From<Condition> for Value {
    fn from(c: Condition) -> Value {
        if let [Predicate::Eq(v)] = c.0.as_slice() {
            return v.clone();
        }
        let mut m = serde_json::Map::new();
        for p in c.0 {
            let (op, v) = match p {
                Predicate::Eq(v) => ("=", v),
                Predicate::Ne(v) => ("!=", v),
                Predicate::Gt(v) => (">", v),
                Predicate::Ge(v) => (">=", v),
                Predicate::Lt(v) => ("<", v),
                Predicate::Le(v) => ("<=", v),
                Predicate::In(v) => ("in", Value::Array(v)),
                Predicate::NotIn(v) => ("not_in", Value::Array(v)),
                Predicate::Between(a, b) => ("between", Value::Array(vec![a, b])),
                Predicate::IsNull(b) => ("is_null", Value::Bool(b)),
                Predicate::Like(s) => ("like", Value::String(s)),
            };
            m.insert(op.to_string(), v);
        }
        Value::Object(m)
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}

/// Builds the plan of `query` on top of `scan` (the plan that reads its table).
/// `partition_key` is the dataset's partition key, used for `partition_date`
/// when the table has no `_partition_date` column.
pub(crate) fn build_plan(
    query: &Query,
    scan: LogicalPlanBuilder,
    partition_key: Option<&str>,
) -> Result<LogicalPlan> {
    let schema: Schema = scan.schema().as_arrow().clone();
    let table = &query.from_path;
    let field = |name: &str| -> Result<&Field> {
        schema.field_with_name(name).map_err(|_| {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            Error::Invalid(format!(
                "unknown column `{name}` in {table}; its columns are: {}",
                names.join(", ")
            ))
        })
    };
    let column = |name: &str| -> Expr { Expr::Column(Column::from_name(name)) };

    let mut predicates = Vec::new();
    for (name, cond) in &query.filters {
        let f = field(name)?;
        for p in &cond.0 {
            let value = |v: &Value| literal(v, f, table);
            let values = |vs: &[Value]| vs.iter().map(value).collect::<Result<Vec<_>>>();
            let c = column(name);
            predicates.push(match p {
                Predicate::Eq(v) => c.eq(value(v)?),
                Predicate::Ne(v) => c.not_eq(value(v)?),
                Predicate::Gt(v) => c.gt(value(v)?),
                Predicate::Ge(v) => c.gt_eq(value(v)?),
                Predicate::Lt(v) => c.lt(value(v)?),
                Predicate::Le(v) => c.lt_eq(value(v)?),
                Predicate::In(vs) => c.in_list(values(vs)?, false),
                Predicate::NotIn(vs) => c.in_list(values(vs)?, true),
                Predicate::Between(lo, hi) => c.between(value(lo)?, value(hi)?),
                Predicate::IsNull(true) => c.is_null(),
                Predicate::IsNull(false) => c.is_not_null(),
                Predicate::Like(pattern) => c.like(lit(pattern.as_str())),
            });
        }
    }
    if let Some(days) = query.partition_date {
        let day = if schema.field_with_name(PARTITION_DATE_COLUMN).is_ok() {
            column(PARTITION_DATE_COLUMN)
        } else if let Some(key) = partition_key {
            field(key)?;
            Expr::Cast(datafusion::logical_expr::Cast::new(
                Box::new(column(key)),
                DataType::Date32,
            ))
        } else {
            return Err(Error::Invalid(format!(
                "{table} has no partition date: it has no `{PARTITION_DATE_COLUMN}` column and \
                 its dataset declares no partition_key"
            )));
        };
        let date = |d: NaiveDate| lit(ScalarValue::Date32(Some(days_since_epoch(d))));
        predicates.push(match days {
            PartitionDate::Day(d) => day.eq(date(d)),
            PartitionDate::Range { from, to } => {
                if from > to {
                    return Err(Error::Invalid(format!(
                        "partition_date range {from}..{to} is empty: `from` is after `to`"
                    )));
                }
                day.between(date(from), date(to))
            }
        });
    }

    let mut plan = scan;
    if let Some(all) = predicates.into_iter().reduce(Expr::and) {
        plan = plan.filter(all)?;
    }
    if !query.order_by.is_empty() {
        let mut sorts = Vec::new();
        for spec in &query.order_by {
            let (name, asc) = parse_order(spec);
            field(name)?;
            sorts.push(SortExpr::new(column(name), asc, !asc));
        }
        plan = plan.sort(sorts)?;
    }
    if !query.select.is_empty() {
        let mut exprs = Vec::new();
        for name in &query.select {
            field(name)?;
            exprs.push(col(Column::from_name(name)));
        }
        plan = plan.project(exprs)?;
    }
    if let Some(n) = query.limit {
        plan = plan.limit(0, Some(n))?;
    }
    Ok(plan.build()?)
}

/// `"ts desc"` → (`ts`, false); `"ts"` / `"ts asc"` → (`ts`, true).
fn parse_order(spec: &str) -> (&str, bool) {
    let spec = spec.trim();
    match spec.rsplit_once(char::is_whitespace) {
        Some((name, dir)) if dir.eq_ignore_ascii_case("desc") => (name.trim(), false),
        Some((name, dir)) if dir.eq_ignore_ascii_case("asc") => (name.trim(), true),
        _ => (spec, true),
    }
}

fn days_since_epoch(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

/// A literal for comparing with `field`. Text is cast to the column's type (so
/// `"2024-02-10"` compares as a date and `"42"` as a number) and must fit it;
/// numbers and booleans compare as themselves against numeric columns.
fn literal(v: &Value, field: &Field, table: &str) -> Result<Expr> {
    let scalar = match v {
        Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => ScalarValue::Int64(Some(i)),
            (None, Some(f)) => ScalarValue::Float64(Some(f)),
            _ => return Err(bad_value(v, field, table, "not a representable number")),
        },
        Value::Null => {
            return Err(Error::Invalid(format!(
                "null for column `{}` in {table}: use {{\"is_null\": true}} to match nulls",
                field.name()
            )));
        }
        Value::Array(_) | Value::Object(_) => {
            return Err(bad_value(v, field, table, "expected a single value"));
        }
    };
    let numeric_to_numeric = !matches!(v, Value::String(_)) && field.data_type().is_numeric();
    if numeric_to_numeric {
        return Ok(lit(scalar));
    }
    let cast = scalar
        .cast_to(field.data_type())
        .map_err(|e| bad_value(v, field, table, &e.find_root().to_string()))?;
    Ok(lit(cast))
}

fn bad_value(v: &Value, field: &Field, table: &str, why: &str) -> Error {
    Error::Invalid(format!(
        "bad value {v} for column `{}` ({}) in {table}: {why}",
        field.name(),
        field.data_type()
    ))
}

/// A value in a `--where` condition: numbers and booleans as such, `'quoted'` or
/// anything else as text (which the engine casts to the column's type).
fn value(s: &str) -> Value {
    let s = s.trim();
    if let Some(inner) = s
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
    {
        return Value::String(inner.to_string());
    }
    match serde_json::from_str::<Value>(s) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(s.to_string()),
    }
}

/// Parses one condition as `tarn query --where` takes it: `col=v`, `col!=v`, `col>v`, `col>=v`, `col<v`,
/// `col<=v`, `col in a,b`, `col not in a,b`, `col between a and b`,
/// `col is null`, `col is not null`, `col like pattern`.
pub fn parse_condition(cond: &str) -> Result<(String, Predicate)> {
    let bad = || {
        format!(
            "`{cond}`: expected COLUMN=VALUE, COLUMN!=VALUE, COLUMN>VALUE (>=, <, <=), \
             'COLUMN in A,B', 'COLUMN between A and B', 'COLUMN is [not] null' or \
             'COLUMN like PATTERN'"
        )
    };
    let words: Vec<&str> = cond.split_whitespace().collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let list = |rest: &[&str]| -> Vec<Value> { rest.join(" ").split(',').map(value).collect() };
    if words.len() >= 3 {
        let col = words[0].to_string();
        match (lower[1].as_str(), lower.get(2).map(String::as_str)) {
            ("is", Some("null")) if words.len() == 3 => return Ok((col, Predicate::IsNull(true))),
            ("is", Some("not")) if words.len() == 4 && lower[3] == "null" => {
                return Ok((col, Predicate::IsNull(false)));
            }
            ("in", _) => return Ok((col, Predicate::In(list(&words[2..])))),
            ("not", Some("in")) if words.len() > 3 => {
                return Ok((col, Predicate::NotIn(list(&words[3..]))));
            }
            ("like", _) => {
                let pattern = match value(&words[2..].join(" ")) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                return Ok((col, Predicate::Like(pattern)));
            }
            ("between", _) => {
                let and = lower
                    .iter()
                    .position(|w| w == "and")
                    .ok_or_else(|| Error::Invalid(bad()))?;
                if and <= 2 || and + 1 >= words.len() {
                    return Err(Error::Invalid(bad()));
                }
                return Ok((
                    col,
                    Predicate::Between(
                        value(&words[2..and].join(" ")),
                        value(&words[and + 1..].join(" ")),
                    ),
                ));
            }
            _ => {}
        }
    }
    for (op, make) in [
        ("!=", Predicate::Ne as fn(Value) -> Predicate),
        (">=", Predicate::Ge),
        ("<=", Predicate::Le),
        ("=", Predicate::Eq),
        (">", Predicate::Gt),
        ("<", Predicate::Lt),
    ] {
        if let Some((col, v)) = cond.split_once(op) {
            let col = col.trim();
            if col.is_empty() || col.contains(char::is_whitespace) {
                return Err(Error::Invalid(bad()));
            }
            return Ok((col.to_string(), make(value(v))));
        }
    }
    Err(Error::Invalid(bad()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form_parses_and_round_trips() {
        let q: Query = serde_json::from_value(serde_json::json!({
            "select": ["user_id"],
            "from_path": "curated/user_events",
            "where": {"event_type": "purchase", "amount": {">": 10, "<=": 99.5},
                      "country": {"in": ["DE", "FR"]}, "coupon": {"is_null": true}},
            "partition_date": {"from": "2024-02-10", "to": "2024-02-12"},
            "order_by": ["timestamp desc"],
            "limit": 5
        }))
        .unwrap();
        assert_eq!(q.table().unwrap(), (Zone::Curated, "user_events"));
        assert_eq!(
            q.filters["amount"].0,
            [
                Predicate::Le(serde_json::json!(99.5)),
                Predicate::Gt(serde_json::json!(10))
            ]
        );
        assert_eq!(
            q.filters["event_type"].0,
            [Predicate::Eq(serde_json::json!("purchase"))]
        );
        let back: Query = serde_json::from_str(&q.to_string()).unwrap();
        assert_eq!(back, q);
    }

    #[test]
    fn bad_forms_are_clear_errors() {
        let err =
            |v: serde_json::Value| serde_json::from_value::<Query>(v).unwrap_err().to_string();
        let e = err(serde_json::json!({"from_path": "raw/x", "where": {"a": {"~": 1}}}));
        assert!(e.contains("unknown operator `~`"), "{e}");
        let e = err(serde_json::json!({"from_path": "raw/x", "where": {"a": {"in": 1}}}));
        assert!(e.contains("`in` takes a list"), "{e}");
        let e = err(serde_json::json!({"from_path": "raw/x", "wher": {}}));
        assert!(e.contains("unknown field `wher`"), "{e}");
        let e = Query::from("nowhere/x").table().unwrap_err().to_string();
        assert!(e.contains("unknown zone `nowhere`"), "{e}");
        let e = Query::from("user_events").table().unwrap_err().to_string();
        assert!(e.contains("must be `zone/dataset`"), "{e}");
    }

    #[test]
    fn order_specs() {
        assert_eq!(parse_order("ts desc"), ("ts", false));
        assert_eq!(parse_order(" ts  ASC "), ("ts", true));
        assert_eq!(parse_order("ts"), ("ts", true));
    }

    #[test]
    fn where_conditions_parse() {
        let p = |s: &str| parse_condition(s).unwrap();
        assert_eq!(
            p("event_type=purchase"),
            ("event_type".into(), Predicate::Eq("purchase".into()))
        );
        assert_eq!(p("amount>10"), ("amount".into(), Predicate::Gt(10.into())));
        assert_eq!(
            p("amount >= 2.5"),
            ("amount".into(), Predicate::Ge(2.5.into()))
        );
        assert_eq!(p("a!='x=y'"), ("a".into(), Predicate::Ne("x=y".into())));
        assert_eq!(
            p("country in DE, FR"),
            (
                "country".into(),
                Predicate::In(vec!["DE".into(), "FR".into()])
            )
        );
        assert_eq!(
            p("n between 1 and 5"),
            ("n".into(), Predicate::Between(1.into(), 5.into()))
        );
        assert_eq!(p("c is null"), ("c".into(), Predicate::IsNull(true)));
        assert_eq!(p("c IS NOT NULL"), ("c".into(), Predicate::IsNull(false)));
        assert_eq!(p("c like 'a%'"), ("c".into(), Predicate::Like("a%".into())));
        assert!(parse_condition("just words").is_err());
        assert!(parse_condition("=5").is_err());
    }
}
