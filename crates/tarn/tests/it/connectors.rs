//! The pull connectors through `DataLake::ingest_data`, on local files and S3:
//! a database source (a SQLite file) read in full, then incrementally by a
//! watermark committed with the rows. Kafka and REST are tested end to end
//! against real servers in tests/python (test_kafka.py, test_connectors.py).

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use tarn::{DataSpec, DatabaseSourceConfig, IngestionStatus, SourceConfig, Zone};

use crate::support::each_backend;

fn ids(batches: &[RecordBatch], run_id: Option<&str>) -> Vec<i64> {
    let mut out = Vec::new();
    for b in batches {
        let id = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        let run = b
            .column_by_name("_ingest_run_id")
            .unwrap()
            .as_string::<i32>();
        for i in 0..b.num_rows() {
            if run_id.is_none_or(|r| run.value(i) == r) && id.is_valid(i) {
                out.push(id.value(i));
            }
        }
    }
    out.sort_unstable();
    out
}

async fn sqlite(path: &std::path::Path) -> SqlitePool {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    SqlitePool::connect_with(opts).await.unwrap()
}

#[tokio::test]
async fn a_database_table_lands_in_full_then_by_watermark() {
    each_backend(|t| async move {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("shop.db");
        let db = sqlite(&db_path).await;
        for sql in [
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, total NUMERIC(8,2), \
             status TEXT, updated_at DATETIME NOT NULL)",
            "INSERT INTO orders VALUES (1, 9.99, 'new', '2024-04-01 08:00:00'), \
             (2, 19.50, 'new', '2024-04-01 09:00:00'), (3, 5.00, 'paid', '2024-04-01 10:00:00')",
        ] {
            sqlx::query(sql).execute(&db).await.unwrap();
        }
        let source = SourceConfig::Database(DatabaseSourceConfig {
            url: format!("sqlite://{}", db_path.display()),
            table: Some("orders".into()),
            watermark: Some("updated_at".into()),
            ..Default::default()
        });
        let spec = DataSpec {
            dataset: "orders".into(),
            source: Some(source),
            ..Default::default()
        };

        let first = t.lake.ingest_data("database", spec.clone()).await.unwrap();
        let m = &first.metadata;
        assert_eq!(first.status, IngestionStatus::Success, "{}", t.backend);
        assert_eq!((m.rows_read, m.rows_written), (3, 3));
        assert_eq!(ids(&t.read(Zone::Raw, "orders").await, None), vec![1, 2, 3]);

        for sql in [
            "INSERT INTO orders VALUES (4, 1.25, 'new', '2024-04-02 08:00:00')",
            "UPDATE orders SET status = 'shipped', updated_at = '2024-04-02 09:00:00' WHERE id = 1",
        ] {
            sqlx::query(sql).execute(&db).await.unwrap();
        }
        let second = t.lake.ingest_data("database", spec.clone()).await.unwrap();
        let run = second.metadata.run_id.clone();
        let raw = t.read(Zone::Raw, "orders").await;
        assert_eq!(ids(&raw, Some(&run)), vec![1, 4], "{}", t.backend);
        assert_eq!(ids(&raw, None), vec![1, 1, 2, 3, 4]);

        let third = t.lake.ingest_data("database", spec.clone()).await.unwrap();
        assert_eq!(third.status, IngestionStatus::Skipped);

        // The source kind must match the spec's source.
        let e = t.lake.ingest_data("kafka", spec).await.unwrap_err();
        assert!(e.to_string().contains("needs a kafka source"), "{e}");
    })
    .await;
}
