//! MySQL/MariaDB column discovery and type mapping.

use std::collections::HashMap;

use sqlx::mysql::MySqlConnection;
use sqlx::{Column as _, Executor, Row, Statement, TypeInfo};

use super::{ALIAS, Backend, Col, FALLBACK_DECIMAL, Kind, decimal_kind};

/// MySQL/MariaDB: types from the prepared statement; decimal precision and
/// scale from `information_schema.COLUMNS` in table mode.
pub(super) async fn mysql_columns(
    conn: &mut MySqlConnection,
    probe: &str,
    table: Option<&str>,
) -> sqlx::Result<(Vec<Col>, u64)> {
    let stmt = conn.prepare(probe).await?;
    let mut queries = 1;
    let has_decimal = stmt
        .columns()
        .iter()
        .any(|c| c.type_info().name() == "DECIMAL");
    let decimals = match table.filter(|_| has_decimal) {
        Some(t) => {
            queries += 1;
            mysql_decimals(conn, t).await?
        }
        None => HashMap::new(),
    };
    let mut cols: Vec<Col> = stmt
        .columns()
        .iter()
        .map(|c| {
            let ty = c.type_info().name();
            let (mut kind, cast) = mysql_kind(ty);
            if ty == "DECIMAL" {
                kind = decimals.get(c.name()).copied().unwrap_or(FALLBACK_DECIMAL);
            }
            Col::new(c.name(), ty, kind, cast)
        })
        .collect();
    if cols
        .iter()
        .any(|c| c.kind == Kind::Binary && c.cast.is_none())
    {
        queries += 1;
        mysql_text_with_bin_collation(conn, probe, &mut cols).await?;
    }
    Ok((cols, queries))
}

/// Turns the binary-flagged string columns of `cols` whose character set is
/// not `binary` into text (MySQL flags text with a `_bin` collation, such as
/// MariaDB's JSON, as binary). `CHARSET()` reads the column's metadata, so
/// a single null-extended row answers for every column.
pub(super) async fn mysql_text_with_bin_collation(
    conn: &mut MySqlConnection,
    probe: &str,
    cols: &mut [Col],
) -> sqlx::Result<()> {
    let flagged: Vec<usize> = (0..cols.len())
        .filter(|&i| cols[i].kind == Kind::Binary && cols[i].cast.is_none())
        .collect();
    let charsets: Vec<String> = flagged
        .iter()
        .map(|&i| format!("CHARSET({ALIAS}.{})", Backend::MySql.quote(&cols[i].name)))
        .collect();
    let sql = format!(
        "SELECT {} FROM (SELECT 1) AS tarn_one LEFT JOIN ({probe} LIMIT 0) AS {ALIAS} ON TRUE",
        charsets.join(", ")
    );
    let row = sqlx::query(&sql).fetch_one(conn).await?;
    for (n, &i) in flagged.iter().enumerate() {
        if row.try_get::<String, _>(n)? != "binary" {
            (cols[i].kind, cols[i].cast) = (Kind::Text, Some("CHAR"));
        }
    }
    Ok(())
}

/// How a MySQL type (sqlx's name for it) is read. Unsigned integers are cast
/// to signed ones (BIGINT UNSIGNED to text, for a decimal); types without a
/// mapping, and decimals (parsed exactly), are cast to text.
pub(super) fn mysql_kind(ty: &str) -> (Kind, Option<&'static str>) {
    match ty {
        "BOOLEAN" => (Kind::Bool, None),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" => (Kind::Int32, None),
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "YEAR" => {
            (Kind::Int32, Some("SIGNED"))
        }
        "INT UNSIGNED" | "BIT" => (Kind::Int64, Some("SIGNED")),
        "BIGINT" => (Kind::Int64, None),
        "BIGINT UNSIGNED" => (Kind::Decimal(20, 0), Some("CHAR")),
        "FLOAT" => (Kind::Float32, None),
        "DOUBLE" => (Kind::Float64, None),
        "DECIMAL" => (FALLBACK_DECIMAL, Some("CHAR")),
        "TIMESTAMP" => (Kind::TimestampTz, None),
        "DATETIME" => (Kind::Timestamp, None),
        "DATE" => (Kind::Date, None),
        "CHAR" | "VARCHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" => {
            (Kind::Text, None)
        }
        "BINARY" | "VARBINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            (Kind::Binary, None)
        }
        "GEOMETRY" => (Kind::Binary, Some("BINARY")),
        _ => (Kind::Text, Some("CHAR")),
    }
}

/// The decimal columns of MySQL table `db.table` (or `table` in the current database).
pub(super) async fn mysql_decimals(
    conn: &mut MySqlConnection,
    table: &str,
) -> sqlx::Result<HashMap<String, Kind>> {
    let (db, name) = table
        .rsplit_once('.')
        .map_or((None, table), |(d, n)| (Some(d), n));
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT COLUMN_NAME, CAST(NUMERIC_PRECISION AS SIGNED), CAST(NUMERIC_SCALE AS SIGNED) \
         FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND DATA_TYPE = 'decimal'",
    )
    .bind(db)
    .bind(name)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(c, p, s)| (c, decimal_kind(p, s)))
        .collect())
}
