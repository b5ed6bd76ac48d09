//! The cleanse stage's standardization: one SQL expression per output column,
//! built from a dataset's `cleanse:` section and applied as a projection.
//!
//! Per column, in order: rename, trim, empty → null, case, timestamp parsing
//! (formats and time zone, to UTC), cast, default, mask. Dropped columns are
//! left out. Deduplication and the MERGE into the cleansed table come after
//! this projection.

use datafusion::common::DFSchema;
use datafusion::logical_expr::Expr;
use datafusion::prelude::DataFrame;
use tarn_common::pipeline::{Case, CleanseConfig, Mask, MaskKind};

use crate::sql::{ident, literal, string};

/// One output column of the standardization.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnPlan {
    /// The input column.
    pub source: String,
    /// The output name (after `rename`).
    pub name: String,
    /// Its SQL expression over the input.
    pub sql: String,
    /// An SQL condition that is true when the value cannot be standardized
    /// (a cast or timestamp parse failed), and the reason given then.
    pub failure: Option<(String, String)>,
    /// Whether the value is masked (a failure reason then withholds it).
    pub masked: bool,
}

/// The plan of one output column, or `None` if it is dropped.
pub fn column_sql(
    config: &CleanseConfig,
    column: &str,
    is_text: bool,
    salt: &str,
) -> Result<Option<ColumnPlan>, String> {
    let name = config
        .rename
        .get(column)
        .cloned()
        .unwrap_or_else(|| column.to_string());
    if config.drop.iter().any(|d| d == column || *d == name) {
        return Ok(None);
    }
    let setting = |key: &str| key == column || key == name;
    let mut e = ident(column);
    if is_text {
        if config.trim.iter().any(|c| setting(c)) {
            e = format!("btrim({e})");
        }
        if config.empty_as_null {
            e = format!("CASE WHEN btrim({e}) = '' THEN NULL ELSE {e} END");
        }
    }
    if let Some(case) = config
        .case
        .iter()
        .find(|(c, _)| setting(c))
        .map(|(_, v)| *v)
    {
        e = match case {
            Case::Upper => format!("upper({e})"),
            Case::Lower => format!("lower({e})"),
        };
    }
    let masked = config.mask.iter().any(|(c, _)| setting(c));
    let mut failure = None;
    if let Some(ts) = config
        .timestamps
        .iter()
        .find(|(c, _)| setting(c))
        .map(|(_, v)| v)
    {
        let mut args = vec![
            format!("CAST({e} AS VARCHAR)"),
            string(ts.timezone.as_deref().unwrap_or("UTC")),
        ];
        args.extend(ts.formats.iter().map(|f| string(f)));
        let parsed = format!("{}({})", crate::udf::PARSE_TIMESTAMP, args.join(", "));
        let expected = if ts.formats.is_empty() {
            "an ISO 8601 timestamp".to_string()
        } else {
            format!("a timestamp in the format {}", ts.formats.join(" or "))
        };
        failure = Some((
            format!("({e}) IS NOT NULL AND ({parsed}) IS NULL"),
            reason(&name, &e, &expected, masked),
        ));
        e = parsed;
    }
    if let Some(ty) = config.cast.iter().find(|(c, _)| setting(c)).map(|(_, v)| v) {
        let cast = format!("TRY_CAST({e} AS {ty})");
        let cond = format!("({e}) IS NOT NULL AND ({cast}) IS NULL");
        let why = reason(&name, &e, &format!("a {ty}"), masked);
        failure = Some(match failure {
            // Parsed first: a failed parse already explains the null.
            Some((c, r)) => (
                format!("({c}) OR ({cond})"),
                format!("CASE WHEN {c} THEN {r} ELSE {why} END"),
            ),
            None => (cond, why),
        });
        e = cast;
    }
    if let Some(v) = config
        .defaults
        .iter()
        .find(|(c, _)| setting(c))
        .map(|(_, v)| v)
    {
        e = format!(
            "coalesce({e}, {})",
            literal(v).map_err(|m| format!("default of `{name}`: {m}"))?
        );
    }
    if let Some(mask) = config.mask.iter().find(|(c, _)| setting(c)).map(|(_, v)| v) {
        let text = format!("CAST({e} AS VARCHAR)");
        let hash = format!("encode(sha256(concat({}, {text})), 'hex')", string(salt));
        e = match mask {
            Mask::Kind(MaskKind::Hash) => {
                format!("CASE WHEN {e} IS NULL THEN NULL ELSE {hash} END")
            }
            Mask::Kind(MaskKind::Tokenize) => {
                format!("CASE WHEN {e} IS NULL THEN NULL ELSE concat('tok_', left({hash}, 16)) END")
            }
            Mask::Kind(MaskKind::Redact) => {
                format!("CASE WHEN {e} IS NULL THEN NULL ELSE 'REDACTED' END")
            }
            Mask::Partial { partial } => format!(
                "CASE WHEN {e} IS NULL THEN NULL ELSE concat(repeat('*', \
                 greatest(character_length({text}) - {partial}, 0)), right({text}, {partial})) END"
            ),
        };
    }
    Ok(Some(ColumnPlan {
        source: column.to_string(),
        name,
        sql: e,
        failure,
        masked,
    }))
}

/// The SQL text of a failure reason: `amount: 'abc' is not a DECIMAL(10,2)`;
/// a masked column's value is withheld.
fn reason(name: &str, value_sql: &str, expected: &str, masked: bool) -> String {
    if masked {
        string(&format!(
            "{name}: the value (withheld: masked column) is not {expected}"
        ))
    } else {
        format!(
            "concat({}, CAST({value_sql} AS VARCHAR), {})",
            string(&format!("{name}: '")),
            string(&format!("' is not {expected}"))
        )
    }
}

/// Name of the column holding why a row was quarantined.
pub const REASON: &str = "_reason";

/// The standardization of every column of `schema` under `config`.
pub fn plan_columns(
    schema: &DFSchema,
    config: &CleanseConfig,
    salt: &str,
) -> Result<Vec<ColumnPlan>, String> {
    let mut plans = Vec::new();
    for field in schema.fields() {
        let is_text = matches!(
            field.data_type(),
            datafusion::arrow::datatypes::DataType::Utf8
                | datafusion::arrow::datatypes::DataType::LargeUtf8
                | datafusion::arrow::datatypes::DataType::Utf8View
        );
        if let Some(plan) = column_sql(config, field.name(), is_text, salt)? {
            plans.push(plan);
        }
    }
    for key in config
        .rename
        .keys()
        .chain(&config.trim)
        .chain(config.case.keys())
        .chain(config.timestamps.keys())
        .chain(config.cast.keys())
        .chain(config.defaults.keys())
        .chain(config.mask.keys())
    {
        let known =
            schema.fields().iter().any(|f| f.name() == key) || plans.iter().any(|p| &p.name == key);
        if !known {
            return Err(format!(
                "cleanse names a column `{key}` that the input does not have (columns: {})",
                schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(plans)
}

/// The standardization projection of `df` under `config`: the output columns
/// and `_reason`, null unless a value could not be standardized.
pub fn standardize(df: DataFrame, config: &CleanseConfig, salt: &str) -> Result<DataFrame, String> {
    let plans = plan_columns(df.schema(), config, salt)?;
    let mut exprs: Vec<Expr> = Vec::new();
    for p in &plans {
        let expr = df
            .parse_sql_expr(&p.sql)
            .map_err(|e| format!("cleanse of column `{}`: {e}", p.source))?;
        exprs.push(expr.alias(&p.name));
    }
    let reasons: Vec<String> = plans
        .iter()
        .filter_map(|p| p.failure.as_ref())
        .map(|(cond, why)| format!("CASE WHEN {cond} THEN {why} END"))
        .collect();
    let reason_sql = if reasons.is_empty() {
        "CAST(NULL AS VARCHAR)".to_string()
    } else {
        // concat_ws skips nulls; an empty result means no failure.
        format!("nullif(concat_ws('; ', {}), '')", reasons.join(", "))
    };
    let reason = df
        .parse_sql_expr(&reason_sql)
        .map_err(|e| format!("cleanse failure checks: {e}"))?;
    exprs.push(reason.alias(REASON));
    df.select(exprs).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;
    use std::sync::Arc;

    #[tokio::test]
    async fn standardization_applies_each_setting() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("country", DataType::Utf8, true),
            Field::new("ts", DataType::Utf8, true),
            Field::new("card", DataType::Utf8, true),
            Field::new("email", DataType::Utf8, true),
            Field::new("debug", DataType::Utf8, true),
            Field::new("amount", DataType::Utf8, true),
        ]));
        let col = |v: [Option<&str>; 2]| Arc::new(StringArray::from(v.to_vec())) as _;
        let batch = RecordBatch::try_new(
            schema,
            vec![
                col([Some(" de "), Some("  ")]),
                col([Some("10/02/2024 10:30"), None]),
                col([Some("4111111111111234"), None]),
                col([Some("a@b.c"), None]),
                col([Some("x"), Some("y")]),
                col([Some("12.50"), None]),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        ctx.register_udf(crate::udf::parse_timestamp_udf());
        let df = ctx.read_batch(batch).unwrap();
        let config: CleanseConfig = serde_yaml_ng::from_str(
            r#"
rename: { ts: timestamp }
drop: [debug]
trim: [country]
case: { country: upper }
timestamps: { timestamp: { formats: ["%d/%m/%Y %H:%M"], timezone: Europe/Berlin } }
cast: { amount: "DECIMAL(10,2)" }
defaults: { country: XX, amount: 0 }
mask: { card: { partial: 4 }, email: hash }
"#,
        )
        .unwrap();
        let out = standardize(df, &config, "s3cret")
            .unwrap()
            .collect()
            .await
            .unwrap();
        let b = &out[0];
        let schema = b.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            ["country", "timestamp", "card", "email", "amount", REASON]
        );
        let text = |i: usize, r: usize| {
            let c = datafusion::arrow::compute::cast(b.column(i), &DataType::Utf8).unwrap();
            let s = c.as_string::<i32>();
            (!s.is_null(r)).then(|| s.value(r).to_string())
        };
        assert_eq!(text(0, 0).as_deref(), Some("DE"));
        assert_eq!(
            text(0, 1).as_deref(),
            Some("XX"),
            "blank became null, then the default"
        );
        assert_eq!(
            text(1, 0).as_deref(),
            Some("2024-02-10T09:30:00Z"),
            "10:30 in Berlin"
        );
        assert_eq!(text(2, 0).as_deref(), Some("************1234"));
        assert_eq!(text(2, 1), None);
        let hash = text(3, 0).unwrap();
        assert_eq!(hash.len(), 64);
        assert_ne!(hash, "a@b.c");
        assert_eq!(text(4, 0).as_deref(), Some("12.50"));
        assert_eq!(text(4, 1).as_deref(), Some("0.00"));
        assert_eq!(text(5, 0), None, "nothing failed");
    }

    #[tokio::test]
    async fn values_that_cannot_be_standardized_get_a_reason() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("amount", DataType::Utf8, true),
            Field::new("ts", DataType::Utf8, true),
            Field::new("email", DataType::Utf8, true),
        ]));
        let col = |v: [Option<&str>; 3]| Arc::new(StringArray::from(v.to_vec())) as _;
        let batch = RecordBatch::try_new(
            schema,
            vec![
                col([Some("abc"), Some("1.5"), None]),
                col([Some("10/02/2024 10:30"), Some("31/02/2024 25:99"), None]),
                col([Some("a@b.c"), Some("not-an-int"), None]),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        ctx.register_udf(crate::udf::parse_timestamp_udf());
        let config: CleanseConfig = serde_yaml_ng::from_str(
            r#"
timestamps: { ts: { formats: ["%d/%m/%Y %H:%M"] } }
cast: { amount: "DECIMAL(10,2)", email: BIGINT }
mask: { email: hash }
"#,
        )
        .unwrap();
        let out = standardize(ctx.read_batch(batch).unwrap(), &config, "s")
            .unwrap()
            .collect()
            .await
            .unwrap();
        let reasons = datafusion::arrow::compute::cast(out[0].column(3), &DataType::Utf8).unwrap();
        let reasons = reasons.as_string::<i32>();
        assert_eq!(
            reasons.value(0),
            "amount: 'abc' is not a DECIMAL(10,2); email: the value (withheld: masked column) is not a BIGINT"
        );
        assert_eq!(
            reasons.value(1),
            "ts: '31/02/2024 25:99' is not a timestamp in the format %d/%m/%Y %H:%M; email: the value (withheld: masked column) is not a BIGINT"
        );
        assert!(reasons.is_null(2), "nulls are not failures");
    }

    #[test]
    fn unknown_columns_in_the_config_are_errors() {
        let schema =
            DFSchema::try_from(Schema::new(vec![Field::new("a", DataType::Utf8, true)])).unwrap();
        let config: CleanseConfig = serde_yaml_ng::from_str("trim: [b]").unwrap();
        let err = plan_columns(&schema, &config, "").unwrap_err();
        assert!(err.contains("`b`") && err.contains("columns: a"), "{err}");
    }
}
