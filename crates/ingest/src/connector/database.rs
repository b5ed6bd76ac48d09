//! DatabaseConnector: reads a table or a query from PostgreSQL, MySQL/MariaDB
//! or SQLite (sqlx, the concrete driver of each) as typed Arrow chunks, in
//! full or incrementally above a watermark column.
//!
//! The source is wrapped as `SELECT … FROM (<table or query>) AS tarn_src`.
//! With a watermark the read adds `WHERE wm > after [AND wm <= up_to]
//! ORDER BY wm`, binding the bounds with the column's own type, and streams
//! the rows (never buffering the result). A value that cannot be converted
//! (a decimal that overflows, an unparsable SQLite datetime) rejects its row
//! with a reason; it does not fail the read.
//!
//! Types that have no native mapping (PostgreSQL json/uuid/time/arrays/enums,
//! MySQL JSON/TIME/SET, …) are cast to text by the database; decimals are read
//! as text too and parsed exactly into `Decimal128`.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
    Int32Array, Int64Array, RecordBatch, RecordBatchOptions, StringArray,
    TimestampMicrosecondArray,
};
use arrow::compute::kernels::cast_utils::parse_decimal;
use arrow::datatypes::{DataType, Decimal128Type, DecimalType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use futures::TryStreamExt;
use futures::stream::BoxStream;
use serde_json::Value as Json;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgColumn, PgConnectOptions, PgConnection, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteConnection};
use sqlx::{Column as _, Connection, Database, Executor, Row, Statement, TypeInfo, ValueRef};
use tarn_common::config::DatabaseSourceConfig;
use tarn_common::schema::UTC;

use super::{ChunkSender, CursorRange, ReadStats};
use crate::error::{Error, Result};
use crate::reader::{Chunk, Payloads, Reject};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The type of decimals whose precision and scale the database does not tell.
const FALLBACK_DECIMAL: Kind = Kind::Decimal(38, 9);
/// Rows looked at to infer the type of a SQLite column that declares none.
const INFER_ROWS: usize = 100;
/// The alias of the wrapped table or query.
const ALIAS: &str = "tarn_src";
const MICROS_PER_DAY: i64 = 86_400_000_000;
/// `NaiveDate::num_days_from_ce` of 1970-01-01.
const EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// The Arrow schema of the rows `src` yields. Checks the spec and the
/// watermark column (which must be an integer, timestamp or date).
pub(crate) async fn describe(src: &DatabaseSourceConfig) -> Result<SchemaRef> {
    let source = Source::new(src)?;
    let mut conn = source.connect().await?;
    let table = source.columns(&mut conn).await;
    conn.close().await;
    Ok(table?.schema())
}

/// Streams the rows whose watermark is in `range` (every row without a
/// watermark), ordered by the watermark, as chunks of at most `batch_size`
/// rows on `tx`.
pub(crate) async fn read(
    src: &DatabaseSourceConfig,
    range: CursorRange,
    batch_size: usize,
    tx: ChunkSender,
) -> Result<ReadStats> {
    let source = Source::new(src)?;
    let mut conn = source.connect().await?;
    let result = source.read(&mut conn, range, batch_size, tx).await;
    conn.close().await;
    result
}

/// `src.url` without its password and query string, then `#table` (or `#query`).
pub(crate) fn label(src: &DatabaseSourceConfig) -> String {
    let target = src.table.as_deref().unwrap_or("query");
    let Ok(mut url) = url::Url::parse(&src.url) else {
        let scheme = src.url.split(':').next().unwrap_or_default();
        return format!("{scheme}:(unparsable URL)#{target}");
    };
    let _ = url.set_password(None);
    url.set_query(None);
    format!("{url}#{target}")
}

/// The database products tarn reads, chosen by URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Postgres,
    MySql,
    Sqlite,
}

impl Backend {
    /// `ident` quoted as an identifier.
    fn quote(self, ident: &str) -> String {
        let q = if self == Backend::MySql { "`" } else { "\"" };
        format!("{q}{}{q}", ident.replace(q, &format!("{q}{q}")))
    }

    /// The `n`th (1-based) bind parameter.
    fn placeholder(self, n: usize) -> String {
        match self {
            Backend::Postgres => format!("${n}"),
            _ => "?".to_string(),
        }
    }

    /// The expression the watermark column is compared and ordered by. SQLite
    /// datetimes are text (or Unix seconds): they are normalized to UTC text
    /// with millisecond precision; the exact bound is applied on the decoded value.
    fn watermark_expr(self, col: &Col) -> String {
        let c = format!("{ALIAS}.{}", self.quote(&col.name));
        if !self.widens(col.kind) {
            return c;
        }
        let f = "'%Y-%m-%d %H:%M:%f'";
        format!(
            "(CASE typeof({c}) WHEN 'integer' THEN strftime({f}, {c}, 'unixepoch') \
             ELSE strftime({f}, {c}) END)"
        )
    }

    /// Whether watermark bounds of `kind` are widened to whole milliseconds
    /// (SQLite datetimes), so that the SQL filter keeps every row in range.
    fn widens(self, kind: Kind) -> bool {
        self == Backend::Sqlite && !matches!(kind, Kind::Int32 | Kind::Int64)
    }

    /// The bound for cursor `micros` on a watermark of `kind` (see [`Self::widens`]).
    fn bound(self, kind: Kind, micros: i64, upper: bool) -> Bound {
        let at = |m: i64| {
            DateTime::from_timestamp_micros(m).unwrap_or(if m < 0 {
                DateTime::<Utc>::MIN_UTC
            } else {
                DateTime::<Utc>::MAX_UTC
            })
        };
        match kind {
            Kind::Int32 | Kind::Int64 => Bound::Int(micros),
            _ if self.widens(kind) => {
                let millis = micros.div_euclid(1000) + i64::from(upper);
                Bound::Text(
                    at(millis.saturating_mul(1000))
                        .format("%Y-%m-%d %H:%M:%S%.3f")
                        .to_string(),
                )
            }
            Kind::Date => {
                Bound::Date(at(micros.div_euclid(MICROS_PER_DAY) * MICROS_PER_DAY).date_naive())
            }
            Kind::TimestampTz => Bound::Utc(at(micros)),
            _ => Bound::Naive(at(micros).naive_utc()),
        }
    }
}

/// An open connection.
enum Conn {
    Pg(PgConnection),
    My(MySqlConnection),
    Lite(SqliteConnection),
}

impl Conn {
    /// Closes the connection politely; a failure here changes nothing.
    async fn close(self) {
        let _ = match self {
            Conn::Pg(c) => c.close().await,
            Conn::My(c) => c.close().await,
            Conn::Lite(c) => c.close().await,
        };
    }
}

/// A checked source spec.
struct Source<'a> {
    backend: Backend,
    /// The URL sqlx parses (`mariadb://` rewritten to `mysql://`).
    url: String,
    label: String,
    table: Option<&'a str>,
    /// The SELECT that is wrapped: `SELECT * FROM <table>` or the query.
    base: String,
    watermark: Option<&'a str>,
}

impl<'a> Source<'a> {
    fn new(src: &'a DatabaseSourceConfig) -> Result<Self> {
        let label = label(src);
        let invalid = |m: &str| Error::Invalid(format!("database source {label}: {m}"));
        let scheme = src
            .url
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let (backend, url) = match scheme.as_str() {
            "postgresql" | "postgres" => (Backend::Postgres, src.url.clone()),
            "mysql" => (Backend::MySql, src.url.clone()),
            "mariadb" => (Backend::MySql, format!("mysql{}", &src.url[scheme.len()..])),
            "sqlite" => (Backend::Sqlite, src.url.clone()),
            _ => {
                return Err(invalid(&format!(
                    "unsupported URL scheme `{scheme}` (use postgresql://, mysql://, mariadb:// or sqlite://)"
                )));
            }
        };
        let table = src
            .table
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let query = src
            .query
            .as_deref()
            .map(|q| q.trim().trim_end_matches(';').trim_end());
        let base = match (table, query.filter(|q| !q.is_empty())) {
            (Some(t), None) => format!(
                "SELECT * FROM {}",
                t.split('.')
                    .map(|p| backend.quote(p))
                    .collect::<Vec<_>>()
                    .join(".")
            ),
            (None, Some(q)) => q.to_string(),
            _ => return Err(invalid("set exactly one of `table` and `query`")),
        };
        let watermark = src.watermark.as_deref().filter(|w| !w.is_empty());
        Ok(Self {
            backend,
            url,
            label,
            table,
            base,
            watermark,
        })
    }

    /// An input error naming the source.
    fn failed(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::input(&self.label, format!("{what}: {e}"))
    }

    async fn connect(&self) -> Result<Conn> {
        let connecting = async {
            Ok::<_, sqlx::Error>(match self.backend {
                Backend::Postgres => {
                    let opts = PgConnectOptions::from_str(&self.url)?.application_name("tarn");
                    Conn::Pg(PgConnection::connect_with(&opts).await?)
                }
                Backend::MySql => Conn::My(
                    MySqlConnection::connect_with(&MySqlConnectOptions::from_str(&self.url)?)
                        .await?,
                ),
                Backend::Sqlite => {
                    let opts = SqliteConnectOptions::from_str(&self.url)?.read_only(true);
                    Conn::Lite(SqliteConnection::connect_with(&opts).await?)
                }
            })
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| self.failed("cannot connect", "timed out after 30 s"))?
            .map_err(|e| self.failed("cannot connect", e))
    }

    /// The result columns and the watermark column.
    async fn columns(&self, conn: &mut Conn) -> Result<Table> {
        let probe = format!("SELECT * FROM ({}) AS {ALIAS}", self.base);
        let described = match conn {
            Conn::Pg(c) => pg_columns(c, &probe).await,
            Conn::My(c) => mysql_columns(c, &probe, self.table).await,
            Conn::Lite(c) => sqlite_columns(c, &probe, self.table).await,
        };
        let (cols, queries) =
            described.map_err(|e| self.failed("cannot describe the source", e))?;
        let watermark = self
            .watermark
            .map(|w| self.watermark_index(&cols, w))
            .transpose()?;
        Ok(Table {
            cols,
            watermark,
            queries,
        })
    }

    /// Where column `name` is among `cols` (exact name first, then ignoring
    /// ASCII case), checking that it can be a watermark.
    fn watermark_index(&self, cols: &[Col], name: &str) -> Result<usize> {
        let i = cols
            .iter()
            .position(|c| c.name == name)
            .or_else(|| cols.iter().position(|c| c.name.eq_ignore_ascii_case(name)))
            .ok_or_else(|| {
                let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
                Error::Invalid(format!(
                    "database source {}: watermark column `{name}` is not a column of the result ({})",
                    self.label,
                    names.join(", ")
                ))
            })?;
        let col = &cols[i];
        if !matches!(
            col.kind,
            Kind::Int32 | Kind::Int64 | Kind::Timestamp | Kind::TimestampTz | Kind::Date
        ) {
            return Err(Error::Invalid(format!(
                "database source {}: watermark column `{}` has type {}; it must be an integer, timestamp or date column",
                self.label, col.name, col.sql_type
            )));
        }
        Ok(i)
    }

    /// The statement that reads `range`, and its bind values.
    fn select(&self, table: &Table, range: CursorRange) -> (String, Vec<Bound>) {
        let b = self.backend;
        let list: Vec<String> = table
            .cols
            .iter()
            .map(|c| {
                let q = b.quote(&c.name);
                match c.cast {
                    Some(ty) => format!("CAST({ALIAS}.{q} AS {ty}) AS {q}"),
                    None => format!("{ALIAS}.{q}"),
                }
            })
            .collect();
        let mut sql = format!("SELECT {} FROM ({}) AS {ALIAS}", list.join(", "), self.base);
        let mut binds = Vec::new();
        if let Some(col) = table.watermark.map(|w| &table.cols[w]) {
            let expr = b.watermark_expr(col);
            let after_op = if b.widens(col.kind) { ">=" } else { ">" };
            sql.push_str(&format!(" WHERE {expr} IS NOT NULL"));
            for (bound, op, upper) in [(range.after, after_op, false), (range.up_to, "<=", true)] {
                if let Some(v) = bound {
                    binds.push(b.bound(col.kind, v, upper));
                    sql.push_str(&format!(" AND {expr} {op} {}", b.placeholder(binds.len())));
                }
            }
            sql.push_str(&format!(" ORDER BY {expr}"));
        }
        (sql, binds)
    }

    async fn read(
        &self,
        conn: &mut Conn,
        range: CursorRange,
        batch_size: usize,
        tx: ChunkSender,
    ) -> Result<ReadStats> {
        let table = self.columns(conn).await?;
        let (sql, binds) = self.select(&table, range);
        let mut out = Emitter::new(&table, range, batch_size, tx);
        match conn {
            Conn::Pg(c) => self.stream::<Postgres>(c, &sql, &binds, &mut out).await?,
            Conn::My(c) => self.stream::<MySql>(c, &sql, &binds, &mut out).await?,
            Conn::Lite(c) => self.stream::<Sqlite>(c, &sql, &binds, &mut out).await?,
        }
        out.flush().await?;
        out.stats.requests = table.queries + 1;
        Ok(out.stats)
    }

    /// Runs `sql` and hands each row to `out`.
    async fn stream<D: Driver>(
        &self,
        conn: &mut D::Connection,
        sql: &str,
        binds: &[Bound],
        out: &mut Emitter<'_>,
    ) -> Result<()> {
        let kinds: Vec<Kind> = out.table.cols.iter().map(|c| c.kind).collect();
        let mut rows = D::fetch(conn, sql, binds);
        while let Some(row) = rows
            .try_next()
            .await
            .map_err(|e| self.failed("query failed", e))?
        {
            let cells = kinds
                .iter()
                .enumerate()
                .map(|(i, k)| D::value(&row, i, *k))
                .collect();
            out.push(cells).await?;
        }
        Ok(())
    }
}

/// How a column is read, and the Arrow type it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int32,
    Int64,
    Float32,
    Float64,
    /// Read as text and parsed exactly.
    Decimal(u8, i8),
    /// A timestamp without time zone, taken as UTC.
    Timestamp,
    TimestampTz,
    Date,
    Text,
    Binary,
}

impl Kind {
    fn arrow_type(self) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
            Kind::Float32 => DataType::Float32,
            Kind::Float64 => DataType::Float64,
            Kind::Decimal(p, s) => DataType::Decimal128(p, s),
            Kind::Timestamp | Kind::TimestampTz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
            }
            Kind::Date => DataType::Date32,
            Kind::Text => DataType::Utf8,
            Kind::Binary => DataType::Binary,
        }
    }
}

/// A decimal of `precision` (at most 38) and `scale`, or the fallback when
/// they make no Arrow decimal.
fn decimal_kind(precision: i64, scale: i64) -> Kind {
    match (u8::try_from(precision.min(38)), i8::try_from(scale)) {
        (Ok(p @ 1..), Ok(s)) if i64::from(s) <= i64::from(p) => Kind::Decimal(p, s),
        _ => FALLBACK_DECIMAL,
    }
}

/// One result column.
#[derive(Debug)]
struct Col {
    name: String,
    /// The database's name for its type, for messages.
    sql_type: String,
    kind: Kind,
    /// The SQL type the column is cast to before it is read, if any.
    cast: Option<&'static str>,
}

impl Col {
    fn new(name: &str, sql_type: &str, kind: Kind, cast: Option<&'static str>) -> Self {
        Col {
            name: name.to_string(),
            sql_type: sql_type.to_string(),
            kind,
            cast,
        }
    }
}

/// A described source.
struct Table {
    cols: Vec<Col>,
    /// Index of the watermark column.
    watermark: Option<usize>,
    /// Statements run to describe it.
    queries: u64,
}

impl Table {
    fn schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .cols
            .iter()
            .map(|c| Field::new(&c.name, c.kind.arrow_type(), true))
            .collect();
        Arc::new(Schema::new(fields))
    }
}

/// PostgreSQL: types from the prepared statement; numeric precision and
/// scale from `pg_attribute` when the column comes from a table.
async fn pg_columns(conn: &mut PgConnection, probe: &str) -> sqlx::Result<(Vec<Col>, u64)> {
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
fn pg_kind(ty: &str) -> (Kind, Option<&'static str>) {
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
async fn pg_numeric(conn: &mut PgConnection, c: &PgColumn) -> sqlx::Result<Kind> {
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

/// MySQL/MariaDB: types from the prepared statement; decimal precision and
/// scale from `information_schema.COLUMNS` in table mode.
async fn mysql_columns(
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
async fn mysql_text_with_bin_collation(
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
fn mysql_kind(ty: &str) -> (Kind, Option<&'static str>) {
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
async fn mysql_decimals(
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

/// SQLite: declared types (`pragma_table_info` in table mode, so that
/// `NUMERIC(p,s)` is seen; sqlx's reading of the declared type in query mode),
/// and for columns without a usable one the type of the first non-null value
/// among the first [`INFER_ROWS`] rows (text when there is none).
async fn sqlite_columns(
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
fn sqlite_kind(decl: &str) -> Option<Kind> {
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
fn precision_scale(decl: &str) -> Option<(i64, i64)> {
    let args = decl.split_once('(')?.1.split_once(')')?.0;
    let mut parts = args.split(',').map(|a| a.trim().parse::<i64>());
    let p = parts.next()?.ok()?;
    let s = parts.next().transpose().ok()?.unwrap_or(0);
    Some((p, s))
}

/// A watermark bound, typed like the column it is compared with.
#[derive(Debug)]
enum Bound {
    Int(i64),
    Naive(NaiveDateTime),
    Utc(DateTime<Utc>),
    Date(NaiveDate),
    Text(String),
}

/// A value read from the database, ready for its Arrow column.
#[derive(Debug)]
enum Value {
    Null,
    Bool(bool),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    /// The unscaled value of a decimal.
    Dec(i128),
    /// Microseconds since the epoch, UTC.
    Micros(i64),
    /// Days since the epoch.
    Days(i32),
    Str(String),
    Bin(Vec<u8>),
}

impl Value {
    /// The value as a cursor, if it can be one.
    fn cursor(&self) -> Option<i64> {
        match *self {
            Value::I32(v) => Some(v.into()),
            Value::I64(v) | Value::Micros(v) => Some(v),
            Value::Days(d) => Some(i64::from(d) * MICROS_PER_DAY),
            _ => None,
        }
    }

    /// Rough size in bytes.
    fn size(&self) -> u64 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::I32(_) | Value::F32(_) | Value::Days(_) => 4,
            Value::I64(_) | Value::F64(_) | Value::Micros(_) => 8,
            Value::Dec(_) => 16,
            Value::Str(s) => s.len() as u64,
            Value::Bin(b) => b.len() as u64,
        }
    }

    /// The value in a JSON payload (bytes as hex, times as RFC 3339).
    fn json(&self, kind: Kind) -> Json {
        match (self, kind) {
            (Value::Bool(v), _) => Json::from(*v),
            (Value::I32(v), _) => Json::from(*v),
            (Value::I64(v), _) => Json::from(*v),
            (Value::F32(v), _) => Json::from(*v),
            (Value::F64(v), _) => Json::from(*v),
            (Value::Dec(v), Kind::Decimal(p, s)) => {
                Json::from(Decimal128Type::format_decimal(*v, p, s))
            }
            (Value::Micros(v), _) => DateTime::from_timestamp_micros(*v)
                .map_or(Json::from(*v), |t| {
                    Json::from(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
                }),
            (Value::Days(v), _) => date(*v).map_or(Json::from(*v), |d| Json::from(d.to_string())),
            (Value::Str(v), _) => Json::from(v.as_str()),
            (Value::Bin(v), _) => {
                Json::from(v.iter().map(|b| format!("{b:02x}")).collect::<String>())
            }
            _ => Json::Null,
        }
    }
}

/// Days since the epoch of `d`.
fn days(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - EPOCH_DAYS_FROM_CE
}

/// The date `days` after the epoch.
fn date(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(days.checked_add(EPOCH_DAYS_FROM_CE)?)
}

/// Parses decimal text exactly: digits beyond the scale or the precision
/// are an error, not rounded away.
fn decimal(text: &str, precision: u8, scale: i8) -> Result<i128, String> {
    let misfit = || format!("{text} does not fit decimal({precision},{scale})");
    let fraction = text.split_once('.').map_or("", |(_, f)| f);
    if !fraction.contains(['e', 'E'])
        && fraction.trim_end_matches('0').len() > usize::try_from(scale).unwrap_or(0)
    {
        return Err(misfit());
    }
    parse_decimal::<Decimal128Type>(text, precision, scale).map_err(|_| misfit())
}

/// The message of a failed column decode.
fn decode_error(e: sqlx::Error) -> String {
    match e {
        sqlx::Error::ColumnDecode { source, .. } => source.to_string(),
        e => e.to_string(),
    }
}

/// What the row loop needs from a sqlx driver.
trait Driver: Database {
    /// Runs `sql` with `binds` and streams its rows.
    fn fetch<'e>(
        conn: &'e mut Self::Connection,
        sql: &'e str,
        binds: &'e [Bound],
    ) -> BoxStream<'e, sqlx::Result<Self::Row>>;

    /// Column `i` of `row` read as `kind`, or why it cannot be.
    fn value(row: &Self::Row, i: usize, kind: Kind) -> Result<Value, String>;
}

/// Implements [`Driver`] for a sqlx database; the code is the same for each,
/// the trait impls it calls are not.
macro_rules! driver {
    ($db:ty) => {
        impl Driver for $db {
            fn fetch<'e>(
                conn: &'e mut Self::Connection,
                sql: &'e str,
                binds: &'e [Bound],
            ) -> BoxStream<'e, sqlx::Result<Self::Row>> {
                let mut query = sqlx::query::<$db>(sql);
                for b in binds {
                    query = match b {
                        Bound::Int(v) => query.bind(*v),
                        Bound::Naive(v) => query.bind(*v),
                        Bound::Utc(v) => query.bind(*v),
                        Bound::Date(v) => query.bind(*v),
                        Bound::Text(v) => query.bind(v.as_str()),
                    };
                }
                query.fetch(conn)
            }

            fn value(row: &Self::Row, i: usize, kind: Kind) -> Result<Value, String> {
                fn get<'r, T: sqlx::Decode<'r, $db> + sqlx::Type<$db>>(
                    row: &'r <$db as Database>::Row,
                    i: usize,
                ) -> Result<Option<T>, String> {
                    row.try_get(i).map_err(decode_error)
                }
                let value = match kind {
                    Kind::Bool => get(row, i)?.map(Value::Bool),
                    Kind::Int32 => get(row, i)?.map(Value::I32),
                    Kind::Int64 => get(row, i)?.map(Value::I64),
                    Kind::Float32 => get(row, i)?.map(Value::F32),
                    // SQLite may hold an integer where a float is declared.
                    Kind::Float64 => match get(row, i) {
                        Ok(v) => v.map(Value::F64),
                        Err(e) => get::<i64>(row, i)
                            .map_err(|_| e)?
                            .map(|v| Value::F64(v as f64)),
                    },
                    Kind::Decimal(p, s) => match get::<String>(row, i)? {
                        Some(t) => Some(Value::Dec(decimal(&t, p, s)?)),
                        None => None,
                    },
                    Kind::Timestamp => get::<NaiveDateTime>(row, i)?
                        .map(|t| Value::Micros(t.and_utc().timestamp_micros())),
                    Kind::TimestampTz => {
                        get::<DateTime<Utc>>(row, i)?.map(|t| Value::Micros(t.timestamp_micros()))
                    }
                    Kind::Date => get(row, i)?.map(|d| Value::Days(days(d))),
                    Kind::Text => get(row, i)?.map(Value::Str),
                    Kind::Binary => get(row, i)?.map(Value::Bin),
                };
                Ok(value.unwrap_or(Value::Null))
            }
        }
    };
}

driver!(Postgres);
driver!(MySql);
driver!(Sqlite);

/// `values` (of a column of `kind`) as an Arrow array.
fn array(kind: Kind, values: Vec<Value>) -> Result<ArrayRef> {
    macro_rules! collect {
        ($array:ty, $variant:ident) => {
            values
                .into_iter()
                .map(|v| match v {
                    Value::$variant(x) => Some(x),
                    _ => None,
                })
                .collect::<$array>()
        };
    }
    Ok(match kind {
        Kind::Bool => Arc::new(collect!(BooleanArray, Bool)),
        Kind::Int32 => Arc::new(collect!(Int32Array, I32)),
        Kind::Int64 => Arc::new(collect!(Int64Array, I64)),
        Kind::Float32 => Arc::new(collect!(Float32Array, F32)),
        Kind::Float64 => Arc::new(collect!(Float64Array, F64)),
        Kind::Decimal(p, s) => Arc::new(
            collect!(Decimal128Array, Dec)
                .with_precision_and_scale(p, s)
                .map_err(|e| Error::Internal(format!("arrow: {e}")))?,
        ),
        Kind::Timestamp | Kind::TimestampTz => {
            Arc::new(collect!(TimestampMicrosecondArray, Micros).with_timezone(UTC))
        }
        Kind::Date => Arc::new(collect!(Date32Array, Days)),
        Kind::Text => Arc::new(collect!(StringArray, Str)),
        Kind::Binary => Arc::new(collect!(BinaryArray, Bin)),
    })
}

/// Collects rows into chunks and sends them; counts what it sent.
struct Emitter<'a> {
    table: &'a Table,
    schema: SchemaRef,
    range: CursorRange,
    batch_size: usize,
    tx: ChunkSender,
    /// The values of each column of the rows collected so far.
    columns: Vec<Vec<Value>>,
    positions: Vec<u64>,
    rejects: Vec<Reject>,
    stats: ReadStats,
}

impl<'a> Emitter<'a> {
    fn new(table: &'a Table, range: CursorRange, batch_size: usize, tx: ChunkSender) -> Self {
        Emitter {
            table,
            schema: table.schema(),
            range,
            batch_size: batch_size.max(1),
            tx,
            columns: table.cols.iter().map(|_| Vec::new()).collect(),
            positions: Vec::new(),
            rejects: Vec::new(),
            stats: ReadStats::default(),
        }
    }

    /// Adds one row: typed when every cell converted, else as a reject.
    /// Rows whose watermark is outside the range are skipped.
    async fn push(&mut self, cells: Vec<Result<Value, String>>) -> Result<()> {
        let cursor = self
            .table
            .watermark
            .and_then(|w| cells[w].as_ref().ok()?.cursor());
        if cursor.is_some_and(|c| !self.range.contains(c)) {
            return Ok(());
        }
        self.stats.records += 1;
        self.stats.bytes += cells.iter().flatten().map(Value::size).sum::<u64>();
        self.stats.max_cursor = self.stats.max_cursor.max(cursor);
        let position = self.stats.records;
        if let Some((i, reason)) = cells
            .iter()
            .enumerate()
            .find_map(|(i, c)| Some((i, c.as_ref().err()?)))
        {
            let name = &self.table.cols[i].name;
            self.rejects.push(Reject {
                position,
                field: Some(name.clone()),
                reason: format!("column `{name}`: {reason}"),
                payload: self.payload(&cells),
            });
        } else {
            for (column, v) in self.columns.iter_mut().zip(cells.into_iter().flatten()) {
                column.push(v);
            }
            self.positions.push(position);
        }
        if self.positions.len() + self.rejects.len() >= self.batch_size {
            self.flush().await?;
        }
        Ok(())
    }

    /// The row as a JSON object; cells that failed to convert are null.
    fn payload(&self, cells: &[Result<Value, String>]) -> String {
        let object: serde_json::Map<String, Json> = self
            .table
            .cols
            .iter()
            .zip(cells)
            .map(|(c, v)| {
                (
                    c.name.clone(),
                    v.as_ref().map_or(Json::Null, |v| v.json(c.kind)),
                )
            })
            .collect();
        Json::Object(object).to_string()
    }

    /// Sends the rows collected so far, if any.
    async fn flush(&mut self) -> Result<()> {
        if self.positions.is_empty() && self.rejects.is_empty() {
            return Ok(());
        }
        let columns = (self.table.cols.iter().zip(&mut self.columns))
            .map(|(c, values)| array(c.kind, std::mem::take(values)))
            .collect::<Result<_>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(self.positions.len()));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map_err(|e| Error::Internal(format!("arrow: {e}")))?;
        let chunk = Chunk {
            batch,
            positions: std::mem::take(&mut self.positions),
            payloads: Payloads::Rows,
            rejects: std::mem::take(&mut self.rejects),
        };
        self.tx
            .send(chunk)
            .await
            .map_err(|_| Error::Internal("the pipeline stopped receiving database rows".into()))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::compute::{cast, concat_batches};
    use arrow::datatypes::{Date32Type, Int64Type, TimestampMicrosecondType};
    use serde_json::json;
    use sqlx::AnyConnection;
    use tokio::sync::mpsc;

    use super::*;

    const PG_TABLE: &str = "
        CREATE TABLE {t} (id int, big bigint, amount numeric(12,2), name text, active bool,
            updated_at timestamptz, day date, doc jsonb, uid uuid, raw bytea, seen timestamp);
        INSERT INTO {t} VALUES
          (3, NULL, NULL, NULL, NULL, '2024-01-03 10:00:00+00', NULL, NULL, NULL, NULL, NULL),
          (1, 10000000000, 12.34, 'ann', true, '2024-01-01 10:00:00+00', '2024-01-01',
           '{\"k\": 1}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x0102ff', '2024-01-01 10:00:00'),
          (5, -5, -0.5, 'eve', false, '2024-01-05 10:00:00.123456+00', '2024-01-05', '[1]',
           NULL, '\\x', '2024-01-05 10:00:00.123456'),
          (2, 2, 2, 'bob', false, '2024-01-02 12:00:00+02', '2024-01-02', '{}', NULL, NULL, NULL),
          (4, 4, 4, 'dan', true, '2024-01-04 10:00:00+00', '2024-01-04', '{}', NULL, NULL, NULL);
        CREATE TABLE {t}_bad (id int, n numeric(40,2));
        INSERT INTO {t}_bad VALUES (1, 1.5), (2, 1e37);";

    const MYSQL_TABLE: &str = "
        CREATE TABLE {t} (id int, big bigint, amount decimal(12,2), name text, active boolean,
            updated_at datetime(6), day date, doc json, uid char(36), raw blob, seen timestamp(6) NULL);
        INSERT INTO {t} VALUES
          (3, NULL, NULL, NULL, NULL, '2024-01-03 10:00:00', NULL, NULL, NULL, NULL, NULL),
          (1, 10000000000, 12.34, 'ann', true, '2024-01-01 10:00:00', '2024-01-01',
           '{\"k\": 1}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', X'0102ff', '2024-01-01 10:00:00'),
          (5, -5, -0.5, 'eve', false, '2024-01-05 10:00:00.123456', '2024-01-05', '[1]',
           NULL, X'', '2024-01-05 10:00:00.123456'),
          (2, 2, 2, 'bob', false, '2024-01-02 10:00:00', '2024-01-02', '{}', NULL, NULL, NULL),
          (4, 4, 4, 'dan', true, '2024-01-04 10:00:00', '2024-01-04', '{}', NULL, NULL, NULL);
        CREATE TABLE {t}_bad (id int, n decimal(40,2));
        INSERT INTO {t}_bad VALUES (1, 1.5), (2, 1e37);";

    /// SQLite datetimes in several of the formats it accepts (offsets, `T`, Unix seconds).
    const SQLITE_TABLE: &str = "
        CREATE TABLE {t} (id INTEGER, big BIGINT, amount NUMERIC(12,2), name TEXT, active BOOLEAN,
            updated_at DATETIME, day DATE, doc JSON, uid CHAR(36), raw BLOB, seen TIMESTAMP);
        INSERT INTO {t} VALUES
          (3, NULL, NULL, NULL, NULL, 1704276000, NULL, NULL, NULL, NULL, NULL),
          (1, 10000000000, 12.34, 'ann', 1, '2024-01-01 10:00:00', '2024-01-01',
           '{\"k\": 1}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', X'0102ff', '2024-01-01T10:00:00Z'),
          (5, -5, -0.5, 'eve', 0, '2024-01-05 10:00:00.123456', '2024-01-05', '[1]',
           NULL, X'', '2024-01-05 10:00:00.123456'),
          (2, 2, 2, 'bob', 0, '2024-01-02T12:00:00+02:00', '2024-01-02', '{}', NULL, NULL, NULL),
          (4, 4, 4, 'dan', 1, '2024-01-04 10:00', '2024-01-04', '{}', NULL, NULL, NULL);
        CREATE TABLE {t}_bad (id INTEGER, n DECIMAL(40,2));
        INSERT INTO {t}_bad VALUES (1, 1.5), (2, 1e37);";

    /// A database holding the test tables `{table}` and `{table}_bad`.
    struct Db {
        url: String,
        table: String,
        id_type: DataType,
        _dir: Option<tempfile::TempDir>,
    }

    impl Db {
        async fn create(
            url: String,
            setup: &str,
            id_type: DataType,
            dir: Option<tempfile::TempDir>,
        ) -> Db {
            let table = format!("tarn_t_{}", uuid::Uuid::new_v4().simple());
            let db = Db {
                url,
                table,
                id_type,
                _dir: dir,
            };
            db.exec(&setup.replace("{t}", &db.table)).await;
            db
        }

        async fn postgres() -> Db {
            Db::create(postgres_url(), PG_TABLE, DataType::Int32, None).await
        }

        async fn mysql() -> Db {
            let url = std::env::var("TARN_TEST_MYSQL_URL")
                .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
            Db::create(url, MYSQL_TABLE, DataType::Int32, None).await
        }

        async fn sqlite() -> Db {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("src.db").display());
            Db::create(url, SQLITE_TABLE, DataType::Int64, Some(dir)).await
        }

        async fn exec(&self, sql: &str) {
            sqlx::any::install_default_drivers();
            let url = if self.url.starts_with("sqlite") {
                format!("{}?mode=rwc", self.url)
            } else {
                self.url.clone()
            };
            let mut conn = AnyConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }

        async fn drop_tables(&self) {
            self.exec(&format!(
                "DROP TABLE {t}; DROP TABLE {t}_bad",
                t = self.table
            ))
            .await;
        }

        fn source(
            &self,
            table: Option<&str>,
            query: Option<&str>,
            watermark: Option<&str>,
        ) -> DatabaseSourceConfig {
            DatabaseSourceConfig {
                url: self.url.clone(),
                table: table.map(Into::into),
                query: query.map(Into::into),
                watermark: watermark.map(Into::into),
            }
        }
    }

    fn postgres_url() -> String {
        std::env::var("TARN_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".into())
    }

    /// Everything `read` sent, and its stats.
    async fn read_all(
        src: &DatabaseSourceConfig,
        range: CursorRange,
        batch_size: usize,
    ) -> (RecordBatch, Vec<Chunk>, ReadStats) {
        let (tx, mut rx) = mpsc::channel(64);
        let stats = read(src, range, batch_size, tx).await.unwrap();
        let mut chunks = Vec::new();
        while let Some(c) = rx.recv().await {
            chunks.push(c);
        }
        let schema = describe(src).await.unwrap();
        let batches: Vec<_> = chunks.iter().map(|c| c.batch.clone()).collect();
        (concat_batches(&schema, &batches).unwrap(), chunks, stats)
    }

    fn ints(batch: &RecordBatch, column: &str) -> Vec<i64> {
        let col = cast(batch.column_by_name(column).unwrap(), &DataType::Int64).unwrap();
        col.as_primitive::<Int64Type>()
            .iter()
            .map(Option::unwrap)
            .collect()
    }

    fn micros(text: &str) -> i64 {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .unwrap()
            .and_utc()
            .timestamp_micros()
    }

    fn range(after: Option<&str>, up_to: Option<&str>) -> CursorRange {
        CursorRange {
            after: after.map(micros),
            up_to: up_to.map(micros),
        }
    }

    fn invalid(e: Error) -> String {
        match e {
            Error::Invalid(m) => m,
            e => panic!("expected an invalid-spec error, got {e:?}"),
        }
    }

    /// The behaviour every backend shares. `query_amount` is the type of a
    /// decimal column in query mode, which not every backend can tell.
    async fn check_backend(db: &Db, query_amount: DataType) {
        let t = db.table.as_str();
        let full = db.source(Some(t), None, None);
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()));
        let schema = describe(&full).await.unwrap();
        let types: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type().clone()))
            .collect();
        assert_eq!(
            types,
            [
                ("id", db.id_type.clone()),
                ("big", DataType::Int64),
                ("amount", DataType::Decimal128(12, 2)),
                ("name", DataType::Utf8),
                ("active", DataType::Boolean),
                ("updated_at", ts.clone()),
                ("day", DataType::Date32),
                ("doc", DataType::Utf8),
                ("uid", DataType::Utf8),
                ("raw", DataType::Binary),
                ("seen", ts),
            ]
        );

        let (batch, chunks, stats) = read_all(&full, CursorRange::default(), 100).await;
        assert_eq!(chunks.len(), 1);
        assert!(chunks[0].rejects.is_empty(), "{:?}", chunks[0].rejects);
        assert_eq!(batch.num_rows(), 5);
        assert_eq!((stats.records, stats.max_cursor), (5, None));
        assert!(stats.bytes > 50 && stats.requests >= 2, "{stats:?}");
        let ids = ints(&batch, "id");
        let (ann, empty) = (
            ids.iter().position(|&i| i == 1).unwrap(),
            ids.iter().position(|&i| i == 3).unwrap(),
        );
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        assert_eq!(ints(&batch.slice(ann, 1), "big"), [10_000_000_000]);
        assert_eq!(
            col("amount").as_primitive::<Decimal128Type>().value(ann),
            1234
        );
        assert_eq!(col("name").as_string::<i32>().value(ann), "ann");
        assert!(col("active").as_boolean().value(ann));
        let updated = col("updated_at");
        let updated = updated.as_primitive::<TimestampMicrosecondType>();
        assert_eq!(updated.value(ann), micros("2024-01-01 10:00:00"));
        assert_eq!(
            updated.value(ids.iter().position(|&i| i == 2).unwrap()),
            micros("2024-01-02 10:00:00")
        );
        assert_eq!(updated.value(empty), micros("2024-01-03 10:00:00"));
        assert_eq!(col("day").as_primitive::<Date32Type>().value(ann), 19723);
        let doc: Json = serde_json::from_str(col("doc").as_string::<i32>().value(ann)).unwrap();
        assert_eq!(doc, json!({"k": 1}));
        assert_eq!(
            col("uid").as_string::<i32>().value(ann),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        assert_eq!(col("raw").as_binary::<i32>().value(ann), [1, 2, 255]);
        assert_eq!(
            col("seen")
                .as_primitive::<TimestampMicrosecondType>()
                .value(ann),
            micros("2024-01-01 10:00:00")
        );
        for name in [
            "big", "amount", "name", "active", "day", "doc", "uid", "raw", "seen",
        ] {
            assert!(col(name).is_null(empty), "{name} should be null");
        }

        // Incremental: rows above the cursor, in watermark order.
        let incremental = db.source(Some(t), None, Some("updated_at"));
        let last = micros("2024-01-05 10:00:00.123456");
        let (batch, _, stats) =
            read_all(&incremental, range(Some("2024-01-02 10:00:00"), None), 100).await;
        assert_eq!(ints(&batch, "id"), [3, 4, 5]);
        assert_eq!((stats.records, stats.max_cursor), (3, Some(last)));
        let (batch, _, stats) = read_all(
            &incremental,
            range(Some("2024-01-01 10:00:00"), Some("2024-01-03 10:00:00")),
            100,
        )
        .await;
        assert_eq!(ints(&batch, "id"), [2, 3]);
        assert_eq!(stats.max_cursor, Some(micros("2024-01-03 10:00:00")));
        let (batch, _, _) = read_all(
            &incremental,
            CursorRange {
                after: Some(last - 1),
                up_to: None,
            },
            100,
        )
        .await;
        assert_eq!(ints(&batch, "id"), [5]);
        let (batch, chunks, stats) = read_all(
            &incremental,
            CursorRange {
                after: Some(last),
                up_to: None,
            },
            100,
        )
        .await;
        assert_eq!(
            (batch.num_rows(), chunks.len(), stats.max_cursor),
            (0, 0, None)
        );

        // Date and timestamp-without-zone watermarks; null watermarks are never read.
        let by_day = db.source(Some(t), None, Some("day"));
        let (batch, _, _) = read_all(&by_day, CursorRange::default(), 100).await;
        assert_eq!(ints(&batch, "id"), [1, 2, 4, 5]);
        let (batch, _, stats) =
            read_all(&by_day, range(Some("2024-01-02 00:00:00"), None), 100).await;
        assert_eq!(ints(&batch, "id"), [4, 5]);
        assert_eq!(stats.max_cursor, Some(micros("2024-01-05 00:00:00")));
        let by_seen = db.source(Some(t), None, Some("seen"));
        let (batch, _, stats) =
            read_all(&by_seen, range(Some("2024-01-01 10:00:00"), None), 100).await;
        assert_eq!(ints(&batch, "id"), [5]);
        assert_eq!(stats.max_cursor, Some(last));

        // Chunks of at most batch_size rows, positions continuing across them.
        let (_, chunks, _) = read_all(&incremental, CursorRange::default(), 2).await;
        assert_eq!(
            chunks
                .iter()
                .map(|c| c.batch.num_rows())
                .collect::<Vec<_>>(),
            [2, 2, 1]
        );
        let positions: Vec<u64> = chunks.iter().flat_map(|c| c.positions.clone()).collect();
        assert_eq!(positions, [1, 2, 3, 4, 5]);
        assert!(chunks.iter().all(|c| matches!(c.payloads, Payloads::Rows)));

        // Query mode with an integer watermark.
        let query = format!("SELECT id, amount, name FROM {t} WHERE id > 1;");
        let by_id = db.source(None, Some(&query), Some("id"));
        let schema = describe(&by_id).await.unwrap();
        let types: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(types, [db.id_type.clone(), query_amount, DataType::Utf8]);
        let (batch, _, stats) = read_all(
            &by_id,
            CursorRange {
                after: Some(2),
                up_to: None,
            },
            100,
        )
        .await;
        assert_eq!(ints(&batch, "id"), [3, 4, 5]);
        assert_eq!(stats.max_cursor, Some(5));

        // A value that does not convert rejects its row, not the read.
        let bad = format!("{t}_bad");
        let (batch, chunks, stats) = read_all(
            &db.source(Some(&bad), None, None),
            CursorRange::default(),
            100,
        )
        .await;
        assert_eq!((batch.num_rows(), stats.records), (1, 2));
        let reject = &chunks[0].rejects[0];
        assert_eq!(reject.field.as_deref(), Some("n"));
        assert!(
            reject.reason.contains("does not fit decimal(38,2)"),
            "{}",
            reject.reason
        );
        let payload: Json = serde_json::from_str(&reject.payload).unwrap();
        assert_eq!(payload, json!({"id": 2, "n": null}));

        // Spec mistakes are clear.
        let e = invalid(
            describe(&db.source(Some(t), None, Some("nope")))
                .await
                .unwrap_err(),
        );
        assert!(
            e.contains("watermark column `nope` is not a column") && e.contains("id, big, amount"),
            "{e}"
        );
        let e = invalid(
            describe(&db.source(Some(t), None, Some("name")))
                .await
                .unwrap_err(),
        );
        assert!(
            e.contains("must be an integer, timestamp or date column"),
            "{e}"
        );
        let missing = db.source(Some("no_such_table"), None, None);
        let e = describe(&missing).await.unwrap_err().to_string();
        assert!(
            e.contains(&label(&missing)) && e.contains("no_such_table"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn postgres() {
        let db = Db::postgres().await;
        check_backend(&db, DataType::Decimal128(12, 2)).await;
        db.drop_tables().await;
    }

    #[tokio::test]
    async fn mysql() {
        let db = Db::mysql().await;
        // MySQL does not tell a query's decimal precision: the fallback applies.
        check_backend(&db, FALLBACK_DECIMAL.arrow_type()).await;
        let mariadb = DatabaseSourceConfig {
            url: db.url.replacen("mysql://", "mariadb://", 1),
            table: Some(db.table.clone()),
            ..Default::default()
        };
        assert_eq!(describe(&mariadb).await.unwrap().fields().len(), 11);
        db.drop_tables().await;
    }

    #[tokio::test]
    async fn mysql_unsigned_time_and_bin_collated_text() {
        let db = Db::mysql().await;
        let t = format!("{}_u", db.table);
        db.exec(&format!(
            "CREATE TABLE {t} (a tinyint unsigned, b int unsigned, c bigint unsigned, d time,
                y year, s varchar(5) COLLATE utf8mb4_bin, v varbinary(4));
             INSERT INTO {t} VALUES (200, 4000000000, 18446744073709551615, '10:30:00', 2024, 'x', X'00ff')"
        ))
        .await;
        let (batch, _, _) =
            read_all(&db.source(Some(&t), None, None), CursorRange::default(), 10).await;
        let types: Vec<_> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        use DataType::*;
        assert_eq!(
            types,
            [Int32, Int64, Decimal128(20, 0), Utf8, Int32, Utf8, Binary]
        );
        assert_eq!(ints(&batch, "a"), [200]);
        assert_eq!(ints(&batch, "b"), [4_000_000_000]);
        assert_eq!(
            batch.column(2).as_primitive::<Decimal128Type>().value(0),
            i128::from(u64::MAX)
        );
        assert_eq!(batch.column(3).as_string::<i32>().value(0), "10:30:00");
        assert_eq!(ints(&batch, "y"), [2024]);
        assert_eq!(batch.column(5).as_string::<i32>().value(0), "x");
        assert_eq!(batch.column(6).as_binary::<i32>().value(0), [0, 255]);
        db.exec(&format!("DROP TABLE {t}")).await;
        db.drop_tables().await;
    }

    #[tokio::test]
    async fn sqlite() {
        let db = Db::sqlite().await;
        // A query loses SQLite's NUMERIC(12,2): the first non-null value (REAL) decides.
        check_backend(&db, DataType::Float64).await;
        db.drop_tables().await;
    }

    #[tokio::test]
    async fn postgres_types_without_a_native_mapping_are_text() {
        let src = DatabaseSourceConfig {
            url: postgres_url(),
            query: Some(
                "SELECT '10:30'::time AS t, ARRAY[1, 2] AS a, 7::int2 AS s, 1.5::numeric AS n"
                    .into(),
            ),
            ..Default::default()
        };
        let (batch, _, _) = read_all(&src, CursorRange::default(), 10).await;
        let types: Vec<_> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(
            types,
            [
                DataType::Utf8,
                DataType::Utf8,
                DataType::Int32,
                FALLBACK_DECIMAL.arrow_type()
            ]
        );
        assert_eq!(batch.column(0).as_string::<i32>().value(0), "10:30:00");
        assert_eq!(batch.column(1).as_string::<i32>().value(0), "{1,2}");
        assert_eq!(
            batch.column(3).as_primitive::<Decimal128Type>().value(0),
            1_500_000_000
        );
    }

    #[tokio::test]
    async fn bad_specs_are_invalid() {
        let spec = |url: &str, table: Option<&str>, query: Option<&str>| DatabaseSourceConfig {
            url: url.into(),
            table: table.map(Into::into),
            query: query.map(Into::into),
            watermark: None,
        };
        let e = invalid(
            describe(&spec("sqlite://x.db", None, None))
                .await
                .unwrap_err(),
        );
        assert!(e.contains("exactly one of `table` and `query`"), "{e}");
        let e = invalid(
            describe(&spec("sqlite://x.db", Some("t"), Some("SELECT 1")))
                .await
                .unwrap_err(),
        );
        assert!(e.contains("exactly one of `table` and `query`"), "{e}");
        let e = invalid(
            describe(&spec("oracle://u:secret@h/db", Some("t"), None))
                .await
                .unwrap_err(),
        );
        assert!(
            e.contains("unsupported URL scheme `oracle`") && !e.contains("secret"),
            "{e}"
        );
        let missing = spec("sqlite:///nonexistent/dir/x.db", Some("t"), None);
        let e = describe(&missing).await.unwrap_err();
        assert!(
            matches!(e, Error::Input { .. }) && e.to_string().contains("cannot connect"),
            "{e}"
        );
    }

    #[test]
    fn labels_hide_passwords() {
        let src = |url: &str, table: Option<&str>| DatabaseSourceConfig {
            url: url.into(),
            table: table.map(Into::into),
            ..Default::default()
        };
        let l = label(&src(
            "postgresql://postgres:s3cret@127.0.0.1:5432/test?password=x",
            Some("orders"),
        ));
        assert_eq!(l, "postgresql://postgres@127.0.0.1:5432/test#orders");
        assert_eq!(
            label(&src("sqlite:data/src.db", None)),
            "sqlite:data/src.db#query"
        );
    }

    #[test]
    fn sqlite_declared_types() {
        let kinds: Vec<_> = [
            "INTEGER",
            "bigint",
            "DECIMAL(10, 3)",
            "NUMERIC",
            "datetime",
            "DATE",
            "TIME",
            "varchar(20)",
            "BLOB",
            "double",
            "BOOLEAN",
            "",
            "NULL",
        ]
        .iter()
        .map(|d| sqlite_kind(d))
        .collect();
        use Kind::*;
        assert_eq!(
            kinds,
            [
                Some(Int64),
                Some(Int64),
                Some(Decimal(10, 3)),
                Some(FALLBACK_DECIMAL),
                Some(TimestampTz),
                Some(Date),
                Some(Text),
                Some(Text),
                Some(Binary),
                Some(Float64),
                Some(Bool),
                None,
                None
            ]
        );
    }

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(decimal("12.3", 12, 2), Ok(1230));
        assert_eq!(decimal("-0.50", 4, 2), Ok(-50));
        assert_eq!(decimal("1.0e+2", 5, 2), Ok(10000));
        assert!(
            decimal("1.234", 12, 2)
                .unwrap_err()
                .contains("does not fit decimal(12,2)")
        );
        assert!(decimal("123456", 5, 0).is_err());
        assert_eq!(decimal_kind(40, 2), Kind::Decimal(38, 2));
        assert_eq!(decimal_kind(2, 4), FALLBACK_DECIMAL);
    }
}
