//! DataEnricher: lookup joins against reference datasets, then derived
//! columns from SQL expressions.

use tarn_common::pipeline::{Lookup, Unmatched};
use tarn_governance::ColumnLineage;

use crate::error::{Error, Result};
use crate::table::ident;

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
        let wanted = l
            .columns
            .iter()
            .map(|c| ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        joins.push(format!(
            "LEFT JOIN (SELECT {key} AS _tarn_key_{n}, {wanted} FROM (SELECT *, row_number() \
             OVER (PARTITION BY {key}) AS _tarn_rank FROM _tarn_lookup_{n}) WHERE _tarn_rank = 1) \
             l{n} ON i.{key} = l{n}._tarn_key_{n}",
            key = ident(&l.key)
        ));
        for c in &l.columns {
            if columns.contains(c) {
                return Err(Error::Invalid(format!(
                    "lookup of `{}` adds `{c}`, which is already a column",
                    l.dataset
                )));
            }
            select.push(format!("l{n}.{}", ident(c)));
            columns.push(c.clone());
        }
        if l.unmatched == Unmatched::Quarantine {
            select.push(format!(
                "(i.{} IS NULL OR l{n}._tarn_key_{n} IS NOT NULL) AS _tarn_matched_{n}",
                ident(&l.key)
            ));
            failures.push(format!(
                "CASE WHEN NOT _tarn_matched_{n} THEN 'lookup:{}' END",
                l.dataset.replace('\'', "''")
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
    lookup
        .columns
        .iter()
        .map(|c| ColumnLineage {
            column: c.clone(),
            inputs: vec![
                format!("{table}.{c}"),
                format!("{table}.{}", lookup.key),
                format!("{input}.{}", lookup.key),
            ],
            kind: "transformation".into(),
        })
        .collect()
}
