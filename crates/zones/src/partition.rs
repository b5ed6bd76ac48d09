//! DataPartitioner: the curated table's partition columns, from the date or
//! hour of a timestamp column or from listed columns.

use tarn_common::pipeline::{PartitionBy, Partitioning};

use crate::error::{Error, Result};
use crate::sql::ident;

/// The partition date column tarn adds (as raw ingest does).
pub const DATE_COLUMN: &str = "_partition_date";
/// The partition hour column tarn adds with `by: hour`.
pub const HOUR_COLUMN: &str = "_partition_hour";

/// The SQL that adds the partition columns to view `enriched`, and the
/// partition columns. `partition_key` is the dataset's default column; it may
/// be a timestamp (its UTC date and hour), a date, or ISO 8601 text.
pub fn partition_sql(
    spec: Option<&Partitioning>,
    partition_key: Option<&str>,
    columns: &[String],
) -> Result<(String, Vec<String>)> {
    let Some(spec) = spec else {
        return Ok(("SELECT * FROM enriched".into(), Vec::new()));
    };
    let column = || {
        spec.column
            .as_deref()
            .or(partition_key)
            .ok_or_else(|| {
                Error::Invalid(
                    "curate.partition by day or hour needs a column: set partition.column or \
                     the dataset's partition_key"
                        .into(),
                )
            })
            .and_then(|c| {
                if columns.iter().any(|x| x == c) {
                    Ok(ident(c))
                } else {
                    Err(Error::Invalid(format!(
                        "curate.partition: `{c}` is not a column ({})",
                        columns.join(", ")
                    )))
                }
            })
    };
    // Replace partition columns the input already has (raw adds _partition_date).
    let without = |drop: &[&str]| {
        let kept: Vec<String> = columns
            .iter()
            .filter(|c| !drop.contains(&c.as_str()))
            .map(|c| ident(c))
            .collect();
        kept.join(", ")
    };
    match spec.by {
        PartitionBy::Day => {
            let c = column()?;
            Ok((
                format!(
                    "SELECT {}, CAST(CAST({c} AS TIMESTAMP) AS DATE) AS {DATE_COLUMN} FROM enriched",
                    without(&[DATE_COLUMN])
                ),
                vec![DATE_COLUMN.to_string()],
            ))
        }
        PartitionBy::Hour => {
            let c = column()?;
            Ok((
                format!(
                    "SELECT {}, CAST(CAST({c} AS TIMESTAMP) AS DATE) AS {DATE_COLUMN}, \
                     CAST(date_part('hour', CAST({c} AS TIMESTAMP)) AS INT) AS {HOUR_COLUMN} \
                     FROM enriched",
                    without(&[DATE_COLUMN, HOUR_COLUMN])
                ),
                vec![DATE_COLUMN.to_string(), HOUR_COLUMN.to_string()],
            ))
        }
        PartitionBy::Columns => {
            if spec.columns.is_empty() {
                return Err(Error::Invalid(
                    "curate.partition by columns needs `columns: [...]`".into(),
                ));
            }
            for c in &spec.columns {
                if !columns.contains(c) {
                    return Err(Error::Invalid(format!(
                        "curate.partition: `{c}` is not a column ({})",
                        columns.join(", ")
                    )));
                }
            }
            // Delta wants partition columns last.
            let rest: Vec<&str> = spec.columns.iter().map(String::as_str).collect();
            Ok((
                format!(
                    "SELECT {}, {} FROM enriched",
                    without(&rest),
                    spec.columns
                        .iter()
                        .map(|c| ident(c))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                spec.columns.clone(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;
    use std::sync::Arc;

    async fn partition_values(spec: &str, ts: &str) -> Vec<String> {
        let schema = Arc::new(Schema::new(vec![Field::new("ts", DataType::Utf8, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec![ts]))]).unwrap();
        let ctx = SessionContext::new();
        ctx.register_batch("enriched", batch).unwrap();
        let spec: Partitioning = serde_yaml_ng::from_str(spec).unwrap();
        let (sql, columns) = partition_sql(Some(&spec), Some("ts"), &["ts".into()]).unwrap();
        let out = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        columns
            .iter()
            .map(|c| {
                let col = out[0].column_by_name(c).unwrap();
                let text = datafusion::arrow::compute::cast(col, &DataType::Utf8).unwrap();
                text.as_string::<i32>().value(0).to_string()
            })
            .collect()
    }

    #[tokio::test]
    async fn day_and_hour_of_iso_text() {
        assert_eq!(
            partition_values("by: day", "2024-02-10T23:30:00Z").await,
            ["2024-02-10"]
        );
        assert_eq!(
            partition_values("by: hour", "2024-02-10T23:30:00Z").await,
            ["2024-02-10", "23"]
        );
    }

    #[test]
    fn mistakes_name_the_column() {
        let spec: Partitioning = serde_yaml_ng::from_str("by: day").unwrap();
        let err = partition_sql(Some(&spec), None, &["a".into()]).unwrap_err();
        assert!(err.to_string().contains("partition_key"), "{err}");
        let err = partition_sql(Some(&spec), Some("b"), &["a".into()]).unwrap_err();
        assert!(err.to_string().contains("`b` is not a column"), "{err}");
        let spec: Partitioning = serde_yaml_ng::from_str("by: columns").unwrap();
        let err = partition_sql(Some(&spec), None, &["a".into()]).unwrap_err();
        assert!(err.to_string().contains("columns: [...]"), "{err}");
    }
}
