//! SQLite column discovery and type mapping (declared types, affinity, inference).

use std::collections::HashMap;

use futures::TryStreamExt;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Column as _, Executor, Row, Statement, TypeInfo, ValueRef};

use super::{Col, FALLBACK_DECIMAL, Kind, decimal_kind};

/// Rows looked at to infer the type of a SQLite column that declares none.
const INFER_ROWS: usize = 100;

/// SQLite: declared types (`pragma_table_info` in table mode, so that
/// `NUMERIC(p,s)` is seen; sqlx's reading of the declared type in query mode),
/// and for columns without a usable one the type of the first non-null value
/// among the first [`INFER_ROWS`] rows (text when there is none).
pub(super) async fn sqlite_columns(
    conn: &mut SqliteConnection,
    probe: &str,
    table: Option<&str>,
) -> sqlx::Result<(Vec<Col>, u64)> {
    let stmt = conn.prepare(probe).await?;
    let mut queries = 1;
    let declared: HashMap<String, String> = match table {
        Some(t) => {
            queries += 1;
            let (schema, name) = t.rsplit_once('.').map_or(("main", t), |(s, n)| (s, n));
            sqlx::query_as("SELECT name, type FROM pragma_table_info(?1, ?2)")
                .bind(name)
                .bind(schema)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .collect()
        }
        None => HashMap::new(),
    };
    let mut cols: Vec<(String, String, Option<Kind>)> = stmt
        .columns()
        .iter()
        .map(|c| {
            let decl = declared
                .get(c.name())
                .map_or(c.type_info().name(), String::as_str);
            (c.name().to_string(), decl.to_string(), sqlite_kind(decl))
        })
        .collect();
    let mut unknown: Vec<usize> = (0..cols.len()).filter(|&i| cols[i].2.is_none()).collect();
    if !unknown.is_empty() {
        queries += 1;
        let sql = format!("{probe} LIMIT {INFER_ROWS}");
        let mut rows = sqlx::query(&sql).fetch(&mut *conn);
        while let Some(row) = rows.try_next().await? {
            for &i in &unknown {
                let value = row.try_get_raw(i)?;
                if !value.is_null() {
                    cols[i].2 = sqlite_kind(value.type_info().name());
                }
            }
            unknown.retain(|&i| cols[i].2.is_none());
            if unknown.is_empty() {
                break;
            }
        }
    }
    let cols = cols
        .into_iter()
        .map(|(name, decl, kind)| {
            let kind = kind.unwrap_or(Kind::Text);
            // Text and decimals are read as SQLite renders any value as text.
            let cast = matches!(kind, Kind::Decimal(..) | Kind::Text).then_some("TEXT");
            Col::new(&name, &decl, kind, cast)
        })
        .collect();
    Ok((cols, queries))
}

/// The kind of a SQLite declared type (SQLite's affinity rules, plus
/// BOOLEAN, DATETIME/TIMESTAMP, DATE, TIME, JSON and NUMERIC/DECIMAL(p,s));
/// `None` when the type says nothing (empty, `NULL`, unknown names).
pub(super) fn sqlite_kind(decl: &str) -> Option<Kind> {
    let d = decl.to_ascii_uppercase();
    let has = |s: &str| d.contains(s);
    Some(if has("BOOL") {
        Kind::Bool
    } else if has("DATETIME") || has("TIMESTAMP") {
        Kind::TimestampTz
    } else if has("DATE") {
        Kind::Date
    } else if has("INT") {
        Kind::Int64
    } else if ["CHAR", "CLOB", "TEXT", "TIME", "JSON", "UUID"]
        .iter()
        .any(|s| has(s))
    {
        Kind::Text
    } else if has("BLOB") {
        Kind::Binary
    } else if has("REAL") || has("FLOA") || has("DOUB") {
        Kind::Float64
    } else if has("NUMERIC") || has("DECIMAL") {
        precision_scale(&d).map_or(FALLBACK_DECIMAL, |(p, s)| decimal_kind(p, s))
    } else {
        return None;
    })
}

/// `(p, s)` of a declared type such as `DECIMAL(12,2)` (`(p, 0)` for `DECIMAL(p)`).
pub(super) fn precision_scale(decl: &str) -> Option<(i64, i64)> {
    let args = decl.split_once('(')?.1.split_once(')')?.0;
    let mut parts = args.split(',').map(|a| a.trim().parse::<i64>());
    let p = parts.next()?.ok()?;
    let s = parts.next().transpose().ok()?.unwrap_or(0);
    Some((p, s))
}
