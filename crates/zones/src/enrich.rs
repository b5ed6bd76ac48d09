//! DataEnricher: lookup joins against reference datasets, then derived
//! columns from SQL expressions.

use tarn_common::pipeline::{Lookup, Unmatched};
use tarn_governance::ColumnLineage;

use crate::error::{Error, Result};
use crate::sql::{ident, string};

/// The SQL of the enrichment of view `input`: each lookup `i` joins view
/// `_tarn_lookup_<i>` (its reference table, registered by the caller), then
/// the derived columns are added. Returns the SQL and, per lookup that
/// quarantines unmatched rows, an SQL text naming the failure (for
/// `_tarn_failed`).
pub fn enrichment_sql(
    input_columns: &[String],
    lookups: &[Lookup],
    derive: &std::collections::BTreeMap<String, String>,
) -> Result<(String, Vec<String>)> {
    let mut columns: Vec<String> = input_columns.to_vec();
    let mut select = vec!["i.*".to_string()];
    let mut joins = Vec::new();
    let mut failures = Vec::new();
    for (n, l) in lookups.iter().enumerate() {
        if !columns.contains(&l.key) {
            return Err(Error::Invalid(format!(
                "lookup of `{}`: the key `{}` is not a column ({})",
                l.dataset,
                l.key,
                columns.join(", ")
            )));
        }
        let prefix = l.prefix.as_deref().unwrap_or("");
        let wanted = l
            .columns
            .iter()
            .map(|c| format!("{} AS {}", ident(c), ident(&format!("{prefix}{c}"))))
            .collect::<Vec<_>>()
            .join(", ");
        // One reference row per key (the reference may repeat a key).
        let ref_key = ident(l.reference_key.as_deref().unwrap_or(&l.key));
        joins.push(format!(
            "LEFT JOIN (SELECT {ref_key} AS _tarn_key_{n}, {wanted} FROM (SELECT *, \
             row_number() OVER (PARTITION BY {ref_key}) AS _tarn_rank FROM _tarn_lookup_{n}) \
             WHERE _tarn_rank = 1) l{n} ON i.{} = l{n}._tarn_key_{n}",
            ident(&l.key)
        ));
        for c in &l.columns {
            let added = format!("{prefix}{c}");
            if columns.contains(&added) {
                return Err(Error::Invalid(format!(
                    "lookup of `{}` adds `{added}`, which is already a column (set `prefix`)",
                    l.dataset
                )));
            }
            select.push(format!("l{n}.{}", ident(&added)));
            columns.push(added);
        }
        if l.unmatched == Unmatched::Quarantine {
            select.push(format!(
                "(i.{} IS NULL OR l{n}._tarn_key_{n} IS NOT NULL) AS _tarn_matched_{n}",
                ident(&l.key)
            ));
            failures.push(format!(
                "CASE WHEN NOT _tarn_matched_{n} THEN {} END",
                string(&format!("lookup:{}", l.dataset))
            ));
        }
    }
    let joined = format!(
        "SELECT {} FROM input i {}",
        select.join(", "),
        joins.join(" ")
    );
    if derive.is_empty() {
        return Ok((joined, failures));
    }
    let derived = derive
        .iter()
        .map(|(name, expr)| {
            if columns.contains(name) {
                Err(Error::Invalid(format!(
                    "derive `{name}`: there is already a column of that name"
                )))
            } else {
                Ok(format!("({expr}) AS {}", ident(name)))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((
        format!("SELECT *, {} FROM ({joined})", derived.join(", ")),
        failures,
    ))
}

/// Column lineage of the lookups: each added column comes from the reference
/// table (`table` is its `zone/dataset`) via the key.
pub fn lookup_lineage(lookup: &Lookup, table: &str, input: &str) -> Vec<ColumnLineage> {
    let prefix = lookup.prefix.as_deref().unwrap_or("");
    let ref_key = lookup.reference_key.as_deref().unwrap_or(&lookup.key);
    lookup
        .columns
        .iter()
        .map(|c| ColumnLineage {
            column: format!("{prefix}{c}"),
            inputs: vec![
                format!("{table}.{c}"),
                format!("{table}.{ref_key}"),
                format!("{input}.{}", lookup.key),
            ],
            kind: "transformation".into(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;
    use std::sync::Arc;

    #[tokio::test]
    async fn lookups_join_by_differently_named_keys_with_prefixes() {
        let ctx = SessionContext::new();
        let trips = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("pu", DataType::Int64, true),
                Field::new("dropoff", DataType::Int64, true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), Some(2), None])),
                Arc::new(Int64Array::from(vec![Some(2), Some(9), Some(1)])),
            ],
        )
        .unwrap();
        let zones = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("borough", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 2])),
                Arc::new(StringArray::from(vec!["Queens", "Bronx", "Bronx"])),
            ],
        )
        .unwrap();
        ctx.register_batch("input", trips).unwrap();
        ctx.register_batch("_tarn_lookup_0", zones.clone()).unwrap();
        ctx.register_batch("_tarn_lookup_1", zones).unwrap();
        let lookups: Vec<Lookup> = serde_yaml_ng::from_str(
            r#"
- { dataset: zones, key: pu, reference_key: id, columns: [borough], prefix: pu_ }
- { dataset: zones, key: dropoff, reference_key: id, columns: [borough], prefix: do_, unmatched: quarantine }
"#,
        )
        .unwrap();
        let derive = [("both".to_string(), "pu_borough = do_borough".to_string())].into();
        let (sql, failures) =
            enrichment_sql(&["pu".into(), "dropoff".into()], &lookups, &derive).unwrap();
        assert_eq!(failures.len(), 1, "only the second lookup quarantines");
        let sql = format!(
            "SELECT pu, dropoff, pu_borough, do_borough, both, {} AS failed FROM ({sql}) ORDER BY dropoff",
            failures[0]
        );
        let out = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&out)
            .unwrap()
            .to_string();
        let expected = "\
+----+---------+------------+------------+-------+--------------+
| pu | dropoff | pu_borough | do_borough | both  | failed       |
+----+---------+------------+------------+-------+--------------+
|    | 1       |            | Queens     |       |              |
| 1  | 2       | Queens     | Bronx      | false |              |
| 2  | 9       | Bronx      |            |       | lookup:zones |
+----+---------+------------+------------+-------+--------------+";
        assert_eq!(
            text, expected,
            "one row per key although the reference repeats 2"
        );
    }

    #[test]
    fn clashing_columns_are_refused() {
        let lookups: Vec<Lookup> =
            serde_yaml_ng::from_str("[{ dataset: z, key: a, columns: [a] }]").unwrap();
        let err = enrichment_sql(&["a".into()], &lookups, &Default::default()).unwrap_err();
        assert!(err.to_string().contains("set `prefix`"), "{err}");
    }
}
