//! PostgreSQL column discovery and type mapping.

use sqlx::postgres::{PgColumn, PgConnection};
use sqlx::{Column as _, Executor, Statement, TypeInfo};

use super::{Col, FALLBACK_DECIMAL, Kind, decimal_kind};

/// PostgreSQL: types from the prepared statement; numeric precision and
/// scale from `pg_attribute` when the column comes from a table.
pub(super) async fn pg_columns(
    conn: &mut PgConnection,
    probe: &str,
) -> sqlx::Result<(Vec<Col>, u64)> {
    let stmt = conn.prepare(probe).await?;
    let mut queries = 1;
    let mut cols = Vec::new();
    for c in stmt.columns() {
        let ty = c.type_info().name();
        let (mut kind, cast) = pg_kind(ty);
        if ty == "NUMERIC" {
            queries += 1;
            kind = pg_numeric(conn, c).await?;
        }
        cols.push(Col::new(c.name(), ty, kind, cast));
    }
    Ok((cols, queries))
}

/// How a PostgreSQL type (sqlx's name for it) is read. Types without a
/// mapping, and numerics (parsed exactly), are cast to text.
pub(super) fn pg_kind(ty: &str) -> (Kind, Option<&'static str>) {
    match ty {
        "BOOL" => (Kind::Bool, None),
        "INT2" => (Kind::Int32, Some("INT4")),
        "INT4" => (Kind::Int32, None),
        "INT8" => (Kind::Int64, None),
        "FLOAT4" => (Kind::Float32, None),
        "FLOAT8" => (Kind::Float64, None),
        "NUMERIC" => (FALLBACK_DECIMAL, Some("TEXT")),
        "TIMESTAMP" => (Kind::Timestamp, None),
        "TIMESTAMPTZ" => (Kind::TimestampTz, None),
        "DATE" => (Kind::Date, None),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => (Kind::Text, None),
        "BYTEA" => (Kind::Binary, None),
        _ => (Kind::Text, Some("TEXT")),
    }
}

/// The decimal type of a PostgreSQL numeric column, from its type modifier.
pub(super) async fn pg_numeric(conn: &mut PgConnection, c: &PgColumn) -> sqlx::Result<Kind> {
    let (Some(rel), Some(att)) = (c.relation_id(), c.relation_attribute_no()) else {
        return Ok(FALLBACK_DECIMAL);
    };
    let typmod: i32 = sqlx::query_scalar(
        "SELECT atttypmod FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attnum = $2",
    )
    .bind(rel)
    .bind(att)
    .fetch_one(conn)
    .await?;
    // -1 is an unconstrained numeric; else ((precision << 16) | scale) + 4,
    // the scale an 11-bit signed number.
    Ok(match typmod - 4 {
        m if m >= 0 => decimal_kind(i64::from(m >> 16), i64::from(((m & 0x7ff) ^ 1024) - 1024)),
        _ => FALLBACK_DECIMAL,
    })
}
