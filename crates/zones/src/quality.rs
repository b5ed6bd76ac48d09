//! DataQualityChecker: a dataset's expectations as SQL over the rows a stage
//! is about to write.
//!
//! Row-level checks (not_null, unique, accepted_values, between, regex,
//! length, referential, sql) become one boolean column each in a `checked`
//! view; table-level checks (row_count, freshness) are aggregates over it.
//! `unique` and `row_count` look at the stage's input (the rows new since the
//! last run), as Great Expectations validates a batch.

use chrono::Utc;
use datafusion::prelude::SessionContext;
use tarn_common::pipeline::{Check, Expectation, Severity};
use tarn_governance::QualityResult;

use crate::error::{Context, Error, Result};
use crate::sql::{ident, string};
use crate::stage::{counts, register};

/// A JSON scalar from the config as an SQL literal.
fn sql_literal(v: &serde_json::Value) -> Result<String> {
    crate::sql::literal(v).map_err(Error::Invalid)
}

/// The kind of a check as stored (`not_null`, `between`, ...).
pub fn check_kind(check: &Check) -> &'static str {
    match check {
        Check::NotNull(_) => "not_null",
        Check::Unique(_) => "unique",
        Check::AcceptedValues { .. } => "accepted_values",
        Check::Between { .. } => "between",
        Check::Regex { .. } => "regex",
        Check::Length { .. } => "length",
        Check::RowCount { .. } => "row_count",
        Check::Freshness { .. } => "freshness",
        Check::Referential { .. } => "referential",
        Check::Sql(_) => "sql",
    }
}

/// `2d`, `12h`, `30m`, `45s` as an SQL interval.
fn interval(age: &str) -> Result<String> {
    let (num, unit) = age.trim().split_at(age.trim().len().saturating_sub(1));
    let n: u64 = num.parse().map_err(|_| {
        Error::Invalid(format!(
            "freshness max_age `{age}`: expected e.g. 2d, 12h, 30m or 45s"
        ))
    })?;
    let unit = match unit {
        "d" => "days",
        "h" => "hours",
        "m" => "minutes",
        "s" => "seconds",
        _ => {
            return Err(Error::Invalid(format!(
                "freshness max_age `{age}`: the unit must be d, h, m or s"
            )));
        }
    };
    Ok(format!("INTERVAL '{n} {unit}'"))
}

/// A reference table a `referential` check needs, registered by the caller
/// under `view`.
pub struct Reference {
    /// The dataset named by the check.
    pub dataset: String,
    /// The view name to register it under.
    pub view: String,
}

/// What [`Checks::evaluate`] found.
pub struct Evaluation {
    /// One result per expectation.
    pub results: Vec<QualityResult>,
    /// Rows checked.
    pub rows: u64,
    /// Rows that failed a `quarantine` expectation (or a quarantining lookup).
    pub quarantined: u64,
}

/// The checks of one stage run, ready to evaluate.
pub struct Checks {
    expectations: Vec<Expectation>,
}

impl Checks {
    /// Validates `expectations` (severity allowed for the kind, names unique).
    pub fn new(expectations: &[Expectation]) -> Result<Self> {
        for (i, e) in expectations.iter().enumerate() {
            if expectations[..i].iter().any(|o| o.name == e.name) {
                return Err(Error::Invalid(format!(
                    "two expectations are named `{}`",
                    e.name
                )));
            }
            if matches!(e.check, Check::RowCount { .. } | Check::Freshness { .. })
                && e.severity == Severity::Quarantine
            {
                return Err(Error::Invalid(format!(
                    "expectation `{}`: {} is about the whole batch, so it can warn or fail \
                     but not quarantine rows",
                    e.name,
                    check_kind(&e.check)
                )));
            }
        }
        Ok(Self {
            expectations: expectations.to_vec(),
        })
    }

    /// The reference tables `referential` checks read, one view each.
    pub fn references(&self) -> Vec<Reference> {
        self.expectations
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match &e.check {
                Check::Referential { dataset, .. } => Some(Reference {
                    dataset: dataset.clone(),
                    view: format!("_tarn_ref_{i}"),
                }),
                _ => None,
            })
            .collect()
    }

    /// Registers `checked`: the view `input` with `_tarn_ok_<i>` per
    /// row-level check and `_tarn_failed`, the names of failed expectations
    /// of severity quarantine (plus `extra_failures`, SQL texts that yield a
    /// name or null), comma-separated, or null.
    pub async fn register_checked(
        &self,
        ctx: &SessionContext,
        extra_failures: &[String],
    ) -> Result<()> {
        let mut windows = Vec::new();
        let mut joins = Vec::new();
        let mut oks = Vec::new();
        for (i, e) in self.expectations.iter().enumerate() {
            let cond = match &e.check {
                Check::NotNull(c) => format!("{} IS NOT NULL", ident(c)),
                Check::Unique(cols) => {
                    let part = cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
                    windows.push(format!(
                        "count(*) OVER (PARTITION BY {part}) AS _tarn_dup_{i}"
                    ));
                    let any_null = cols
                        .iter()
                        .map(|c| format!("{} IS NULL", ident(c)))
                        .collect::<Vec<_>>()
                        .join(" OR ");
                    format!("{any_null} OR _tarn_dup_{i} = 1")
                }
                Check::AcceptedValues { column, values } => {
                    let list = values
                        .iter()
                        .map(sql_literal)
                        .collect::<Result<Vec<_>>>()?
                        .join(", ");
                    let c = ident(column);
                    format!("{c} IS NULL OR {c} IN ({list})")
                }
                Check::Between { column, min, max } => {
                    let c = ident(column);
                    let mut parts = Vec::new();
                    if let Some(v) = min {
                        parts.push(format!("{c} >= {}", sql_literal(v)?));
                    }
                    if let Some(v) = max {
                        parts.push(format!("{c} <= {}", sql_literal(v)?));
                    }
                    if parts.is_empty() {
                        return Err(Error::Invalid(format!(
                            "expectation `{}`: between needs min, max or both",
                            e.name
                        )));
                    }
                    format!("{c} IS NULL OR ({})", parts.join(" AND "))
                }
                Check::Regex { column, pattern } => {
                    let c = ident(column);
                    format!(
                        "{c} IS NULL OR regexp_like(CAST({c} AS VARCHAR), {})",
                        string(pattern)
                    )
                }
                Check::Length { column, min, max } => {
                    let c = ident(column);
                    let len = format!("character_length(CAST({c} AS VARCHAR))");
                    let mut parts = Vec::new();
                    if let Some(v) = min {
                        parts.push(format!("{len} >= {v}"));
                    }
                    if let Some(v) = max {
                        parts.push(format!("{len} <= {v}"));
                    }
                    if parts.is_empty() {
                        return Err(Error::Invalid(format!(
                            "expectation `{}`: length needs min, max or both",
                            e.name
                        )));
                    }
                    format!("{c} IS NULL OR ({})", parts.join(" AND "))
                }
                Check::Referential { column, key, .. } => {
                    joins.push(format!(
                        "LEFT JOIN (SELECT DISTINCT {} AS _tarn_key_{i} FROM _tarn_ref_{i}) r{i} \
                         ON i.{} = r{i}._tarn_key_{i}",
                        ident(key),
                        ident(column)
                    ));
                    format!("{} IS NULL OR _tarn_key_{i} IS NOT NULL", ident(column))
                }
                Check::Sql(expr) => format!("({expr})"),
                Check::RowCount { .. } | Check::Freshness { .. } => continue,
            };
            oks.push((i, format!("coalesce({cond}, false) AS _tarn_ok_{i}")));
        }
        let mut failed: Vec<String> = oks
            .iter()
            .filter(|(i, _)| self.expectations[*i].severity == Severity::Quarantine)
            .map(|(i, _)| {
                format!(
                    "CASE WHEN NOT _tarn_ok_{i} THEN {} END",
                    string(&self.expectations[*i].name)
                )
            })
            .collect();
        failed.extend(extra_failures.iter().cloned());
        let failed = if failed.is_empty() {
            "CAST(NULL AS VARCHAR)".to_string()
        } else {
            format!("nullif(concat_ws(',', {}), '')", failed.join(", "))
        };
        let base = if windows.is_empty() {
            "input".to_string()
        } else {
            format!("(SELECT *, {} FROM input)", windows.join(", "))
        };
        let oks_sql: String = oks.iter().map(|(_, s)| format!(", {s}")).collect();
        let inner = format!("SELECT i.*{oks_sql} FROM {base} i {}", joins.join(" "));
        let sql = format!("SELECT *, {failed} AS _tarn_failed FROM ({inner})");
        let df = ctx
            .sql(&sql)
            .await
            .context(|| "plan the quality checks".into())?;
        register(ctx, "checked", df)
    }

    /// Evaluates every expectation over `checked`, in one pass that also
    /// counts the rows and the rows to quarantine.
    pub async fn evaluate(
        &self,
        ctx: &SessionContext,
        run_id: &str,
        dataset: &str,
    ) -> Result<Evaluation> {
        let mut aggs = vec!["count(*)".to_string(), "count(_tarn_failed)".to_string()];
        for (i, e) in self.expectations.iter().enumerate() {
            aggs.push(match &e.check {
                Check::RowCount { .. } => "0".into(),
                Check::Freshness { column, max_age } => format!(
                    "CASE WHEN max({c}) IS NOT NULL AND \
                     CAST(max({c}) AS TIMESTAMP) >= CAST(now() AS TIMESTAMP) - {} \
                     THEN 0 ELSE 1 END",
                    interval(max_age)?,
                    c = ident(column)
                ),
                _ => format!("sum(CASE WHEN _tarn_ok_{i} THEN 0 ELSE 1 END)"),
            });
        }
        let aggs: Vec<String> = aggs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{a} AS _tarn_v{i}"))
            .collect();
        let values = counts(ctx, &format!("SELECT {} FROM checked", aggs.join(", "))).await?;
        let (rows, quarantined) = (values[0], values[1]);
        let recorded_at = Utc::now();
        let mut results = Vec::new();
        for (i, e) in self.expectations.iter().enumerate() {
            let mut failed = values[i + 2];
            let observed = match &e.check {
                Check::RowCount { min, max } => {
                    failed =
                        u64::from(min.is_some_and(|m| rows < m) || max.is_some_and(|m| rows > m));
                    Some(format!("{rows} rows"))
                }
                Check::Freshness { column, .. } => Some(newest(ctx, column).await?),
                _ if failed > 0 => Some(format!("{failed} of {rows} rows failed")),
                _ => None,
            };
            results.push(QualityResult {
                run_id: run_id.to_string(),
                dataset: dataset.to_string(),
                stage: "curate".into(),
                expectation: e.name.clone(),
                check: check_kind(&e.check).into(),
                severity: match e.severity {
                    Severity::Warn => "warn",
                    Severity::Quarantine => "quarantine",
                    Severity::Fail => "fail",
                }
                .into(),
                passed: failed == 0,
                evaluated_rows: rows as i64,
                failed_rows: failed as i64,
                observed,
                recorded_at,
            });
        }
        Ok(Evaluation {
            results,
            rows,
            quarantined,
        })
    }
}

/// `newest value: …` of `column` in `checked`, for a freshness result.
async fn newest(ctx: &SessionContext, column: &str) -> Result<String> {
    let sql = format!(
        "SELECT CAST(max({}) AS VARCHAR) FROM checked",
        ident(column)
    );
    let batches = ctx
        .sql(&sql)
        .await
        .context(|| format!("plan `{sql}`"))?
        .collect()
        .await
        .context(|| format!("run `{sql}`"))?;
    let value = batches.iter().find(|b| b.num_rows() > 0).and_then(|b| {
        let c = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).ok()?;
        let s = arrow::array::AsArray::as_string::<i32>(&c);
        arrow::array::Array::is_valid(s, 0).then(|| s.value(0).to_string())
    });
    Ok(match value {
        Some(v) => format!("newest {column}: {v}"),
        None => format!("no {column} values"),
    })
}

/// The message of a failed `fail` expectation, or `None` if all held.
pub fn gate_failure(results: &[QualityResult]) -> Option<String> {
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.severity == "fail" && !r.passed)
        .map(|r| {
            format!(
                "expectation `{}` ({}) failed: {}",
                r.expectation,
                r.check,
                r.observed.clone().unwrap_or_default()
            )
        })
        .collect();
    (!failed.is_empty()).then(|| failed.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn expectations(yaml: &str) -> Vec<Expectation> {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn intervals_and_invalid_settings() {
        assert_eq!(interval("2d").unwrap(), "INTERVAL '2 days'");
        assert_eq!(interval("45s").unwrap(), "INTERVAL '45 seconds'");
        assert!(interval("2w").unwrap_err().to_string().contains("unit"));
        let err = Checks::new(&expectations(
            "[{ name: n, row_count: { min: 1 }, severity: quarantine }]",
        ))
        .err()
        .unwrap();
        assert!(err.to_string().contains("can warn or fail"), "{err}");
        let err = Checks::new(&expectations(
            "[{ name: n, not_null: a }, { name: n, not_null: b }]",
        ))
        .err()
        .unwrap();
        assert!(err.to_string().contains("two expectations are named `n`"));
    }

    #[tokio::test]
    async fn every_check_counts_its_failing_rows() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("kind", DataType::Utf8, true),
            Field::new("code", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), Some(2), Some(2), None])),
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("b"),
                    Some("x"),
                    None,
                ])),
                Arc::new(StringArray::from(vec![
                    Some("DE"),
                    Some("FRA"),
                    Some("de"),
                    Some("US"),
                ])),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        ctx.register_batch("input", batch).unwrap();
        let refs = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("c", DataType::Utf8, false)])),
            vec![Arc::new(StringArray::from(vec!["DE", "US"]))],
        )
        .unwrap();
        let checks = Checks::new(&expectations(
            r#"
- { name: nn, not_null: id }
- { name: uq, unique: [id] }
- { name: av, accepted_values: { column: kind, values: [a, b] }, severity: quarantine }
- { name: bt, between: { column: id, min: 2 } }
- { name: rx, regex: { column: code, pattern: "^[A-Z]+$" } }
- { name: ln, length: { column: code, max: 2 }, severity: quarantine }
- { name: rc, row_count: { max: 3 }, severity: fail }
- { name: rf, referential: { column: code, dataset: countries, key: c } }
- { name: sq, sql: "kind <> 'b'" }
"#,
        ))
        .unwrap();
        let view = &checks.references()[0].view;
        ctx.register_batch(view, refs).unwrap();
        checks.register_checked(&ctx, &[]).await.unwrap();
        let evaluation = checks.evaluate(&ctx, "run", "ds").await.unwrap();
        assert_eq!((evaluation.rows, evaluation.quarantined), (4, 2));
        let results = evaluation.results;
        let failed: Vec<(&str, i64)> = results
            .iter()
            .map(|r| (r.expectation.as_str(), r.failed_rows))
            .collect();
        assert_eq!(
            failed,
            [
                ("nn", 1),
                ("uq", 2),
                ("av", 1),
                ("bt", 1),
                ("rx", 1),
                ("ln", 1),
                ("rc", 1),
                ("rf", 2),
                ("sq", 2), // a null result fails
            ]
        );
        assert_eq!(
            gate_failure(&results).unwrap(),
            "expectation `rc` (row_count) failed: 4 rows"
        );
        // Rows failing a quarantine expectation are named in _tarn_failed.
        let named = counts(
            &ctx,
            "SELECT count(*) FROM checked WHERE _tarn_failed = 'av,ln' OR _tarn_failed = 'ln' \
             OR _tarn_failed = 'av'",
        )
        .await
        .unwrap();
        assert_eq!(named, [2]);
    }
}
