//! Tests of the database connector.

use arrow::array::{Array, AsArray};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{Date32Type, Int64Type, TimestampMicrosecondType};
use serde_json::json;
use sqlx::AnyConnection;
use tokio::sync::mpsc;

use super::sqlite::sqlite_kind;
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
    let (batch, _, stats) = read_all(&by_day, range(Some("2024-01-02 00:00:00"), None), 100).await;
    assert_eq!(ints(&batch, "id"), [4, 5]);
    assert_eq!(stats.max_cursor, Some(micros("2024-01-05 00:00:00")));
    let by_seen = db.source(Some(t), None, Some("seen"));
    let (batch, _, stats) = read_all(&by_seen, range(Some("2024-01-01 10:00:00"), None), 100).await;
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
            "SELECT '10:30'::time AS t, ARRAY[1, 2] AS a, 7::int2 AS s, 1.5::numeric AS n".into(),
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
