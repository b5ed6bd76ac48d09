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

/// `name` as an SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as an SQL string literal.
fn string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A JSON scalar from the config as an SQL literal.
fn literal(v: &serde_json::Value) -> Result<String, String> {
    match v {
        serde_json::Value::String(s) => Ok(string(s)),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!(
            "a default must be a string, number or boolean, not {other}"
        )),
    }
}

/// The SQL expression of one output column, or `None` if it is dropped.
pub fn column_sql(
    config: &CleanseConfig,
    column: &str,
    is_text: bool,
    salt: &str,
) -> Result<Option<(String, String)>, String> {
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
    if let Some(ts) = config
        .timestamps
        .iter()
        .find(|(c, _)| setting(c))
        .map(|(_, v)| v)
    {
        let formats: Vec<String> = ts.formats.iter().map(|f| string(f)).collect();
        let parsed = if formats.is_empty() {
            format!("to_timestamp_micros({e})")
        } else {
            format!("to_timestamp_micros({e}, {})", formats.join(", "))
        };
        let tz = ts.timezone.as_deref().unwrap_or("UTC");
        // A naive timestamp cast to a zoned type is read as local time there.
        e = format!(
            "arrow_cast(arrow_cast({parsed}, 'Timestamp(Microsecond, Some(\"{tz}\"))'), \
             'Timestamp(Microsecond, Some(\"UTC\"))')"
        );
    }
    if let Some(ty) = config.cast.iter().find(|(c, _)| setting(c)).map(|(_, v)| v) {
        e = format!("CAST({e} AS {ty})");
    }
    if let Some(v) = config
        .defaults
        .iter()
        .find(|(c, _)| setting(c))
        .map(|(_, v)| v)
    {
        e = format!("coalesce({e}, {})", literal(v)?);
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
    Ok(Some((name, e)))
}

/// The standardization projection of `df` under `config`.
pub fn standardize(df: DataFrame, config: &CleanseConfig, salt: &str) -> Result<DataFrame, String> {
    let schema: DFSchema = df.schema().clone();
    let mut exprs: Vec<Expr> = Vec::new();
    for field in schema.fields() {
        let is_text = matches!(
            field.data_type(),
            datafusion::arrow::datatypes::DataType::Utf8
                | datafusion::arrow::datatypes::DataType::LargeUtf8
                | datafusion::arrow::datatypes::DataType::Utf8View
        );
        let Some((name, sql)) = column_sql(config, field.name(), is_text, salt)? else {
            continue;
        };
        let expr = df
            .parse_sql_expr(&sql)
            .map_err(|e| format!("cleanse of column `{}`: {e}", field.name()))?;
        exprs.push(expr.alias(name));
    }
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
        assert_eq!(names, ["country", "timestamp", "card", "email", "amount"]);
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
    }
}
