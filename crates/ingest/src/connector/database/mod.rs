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
use sqlx::postgres::{PgConnectOptions, PgConnection, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Database, Row};
use tarn_common::config::DatabaseSourceConfig;
use tarn_common::schema::UTC;

use super::{ChunkSender, CursorRange, ReadStats};
use crate::error::{Error, Result};
use crate::reader::{Chunk, Payloads, Reject};

mod mysql;
mod postgres;
mod sqlite;

use mysql::mysql_columns;
use postgres::pg_columns;
use sqlite::sqlite_columns;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The type of decimals whose precision and scale the database does not tell.
const FALLBACK_DECIMAL: Kind = Kind::Decimal(38, 9);
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
mod tests;
