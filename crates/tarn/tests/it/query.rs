//! The query engine through the `DataLake` API: SQL and structured queries,
//! pruning in `explain`, the result cache, time travel, `system` tables and
//! statistics, on every backend.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use tarn::{CacheStatus, DataLake, DataSpec, Predicate, Query, Zone};

use crate::support::{TestLake, each_backend};

const EVENTS_AVSC: &str = r#"{"type": "record", "name": "ev", "fields": [
  {"name": "id", "type": "long"},
  {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
  {"name": "kind", "type": "string"},
  {"name": "amount", "type": ["null", "double"], "default": null}]}"#;

/// `days` days of events from 2024-01-01, `per_day` per day; ids start at `first_id`.
fn events_csv(days: u32, per_day: u32, first_id: u32) -> String {
    let mut csv = String::from("id,ts,kind,amount\n");
    let mut id = first_id;
    for d in 0..days {
        let date =
            chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Days::new(d.into());
        for i in 0..per_day {
            let kind = if i % 3 == 0 { "purchase" } else { "view" };
            let amount = if kind == "purchase" {
                format!("{}.5", i)
            } else {
                String::new()
            };
            csv.push_str(&format!(
                "{id},{date}T10:{:02}:00Z,{kind},{amount}\n",
                i % 60
            ));
            id += 1;
        }
    }
    csv
}

async fn ingest(t: &TestLake, name: &str, csv: String) {
    let avsc = t.put("ev.avsc", EVENTS_AVSC).await;
    let path = t.put(name, csv).await;
    let spec = DataSpec::new("ev", path)
        .with_schema(avsc)
        .with_partition_key("ts");
    t.lake.ingest_data("file", spec).await.unwrap();
}

async fn sql(lake: &DataLake, sql: &str) -> Vec<RecordBatch> {
    lake.sql(sql).await.unwrap().collect().await.unwrap()
}

fn count(batches: &[RecordBatch]) -> i64 {
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("id")
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

#[tokio::test]
async fn sql_and_structured_queries_return_the_same_rows() {
    each_backend(|t| async move {
        ingest(&t, "a.csv", events_csv(3, 6, 1)).await;
        let by_sql = sql(
            &t.lake,
            "SELECT id FROM raw.ev WHERE kind = 'purchase' AND amount > 2 ORDER BY id DESC",
        )
        .await;
        let query = Query::from("raw/ev")
            .select(["id"])
            .filter("kind", Predicate::Eq("purchase".into()))
            .filter("amount", Predicate::Gt(2.into()))
            .order_by("id desc");
        let structured = t
            .lake
            .query_data(&query)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        // Per day, purchases are i = 0 and 3 (amounts 0.5 and 3.5): one per day is > 2.
        assert_eq!(ids(&by_sql), [16, 10, 4], "{}", t.backend);
        assert_eq!(ids(&structured), ids(&by_sql), "{}", t.backend);

        let q = Query::from("raw/ev")
            .select(["id", "amount"])
            .filter("amount", Predicate::IsNull(false))
            .filter("id", Predicate::Between(1.into(), "9".into()))
            .order_by("id")
            .limit(2);
        let got = t
            .lake
            .query_data(&q)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(ids(&got), [1, 4]);
        assert_eq!(got[0].num_columns(), 2);
    })
    .await;
}

#[tokio::test]
async fn structured_query_mistakes_are_clear_errors() {
    each_backend(|t| async move {
        ingest(&t, "a.csv", events_csv(1, 3, 1)).await;
        let err = |q: Query| {
            let lake = t.lake.clone();
            async move { lake.query_data(&q).await.unwrap_err().to_string() }
        };
        let e = err(Query::from("raw/ev").select(["nope"])).await;
        assert!(
            e.contains("unknown column `nope` in raw/ev; its columns are: id, ts"),
            "{e}"
        );
        let e = err(Query::from("raw/ev").filter("id", Predicate::Eq("abc".into()))).await;
        assert!(
            e.contains("bad value \"abc\" for column `id` (Int64)"),
            "{e}"
        );
        let e = err(Query::from("raw/nope")).await;
        assert!(
            e.contains("no table `nope` in the raw zone; raw has: ev"),
            "{e}"
        );
        let e = err(Query::from("curated/ev")).await;
        assert!(e.contains("the curated zone has no tables yet"), "{e}");
        let e = err(Query::from("raw/ev@yesterday")).await;
        assert!(e.contains("bad time-travel suffix"), "{e}");
        let e = err(Query::from("raw/ev@v99")).await;
        assert!(e.contains("raw.ev has no version 99"), "{e}");
        let e = err(Query {
            partition_date: Some(tarn::PartitionDate::Range {
                from: chrono::NaiveDate::from_ymd_opt(2024, 2, 1).unwrap(),
                to: chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            }),
            ..Query::from("raw/ev")
        })
        .await;
        assert!(e.contains("`from` is after `to`"), "{e}");

        let e = t
            .lake
            .sql("DROP TABLE raw.ev")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("tarn queries are read-only"), "{e}");
        let e = t
            .lake
            .sql("INSERT INTO raw.ev (id) VALUES (1)")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("read-only"), "{e}");
        let e = t.lake.sql("SELEC 1").await.unwrap_err().to_string();
        assert!(e.contains("SELEC"), "{e}");
    })
    .await;
}

#[tokio::test]
async fn partition_date_reads_only_that_days_files() {
    each_backend(|t| async move {
        ingest(&t, "a.csv", events_csv(30, 4, 1)).await;
        let day = chrono::NaiveDate::from_ymd_opt(2024, 1, 15).unwrap();
        let query = Query::from("raw/ev").partition_date(day);
        let engine = t.lake.query_engine();
        let plan = engine.plan_query(&query).await.unwrap();
        let explained = engine.explain(&plan).await.unwrap();
        let scan = &explained.scans[0];
        assert_eq!(scan.table, "raw.ev@v1");
        assert_eq!((scan.before.files, scan.before.rows), (30, 120));
        assert_eq!((scan.after.files, scan.after.rows), (1, 4), "{explained}");
        assert!(scan.after.bytes > 0 && scan.after.bytes * 10 < scan.before.bytes);
        assert!(explained.estimated_cost > 0.0);
        let text = explained.to_string();
        assert!(text.contains("files 30 -> 1"), "{text}");

        let rows = engine.execute(plan).await.unwrap().collect().await.unwrap();
        assert_eq!(ids(&rows).len(), 4);
        assert!(ids(&rows).iter().all(|id| (57..=60).contains(id)));

        // File skipping on min/max of a non-partition column: ids are ordered by day.
        let plan = engine
            .plan_sql("SELECT * FROM raw.ev WHERE id <= 8")
            .await
            .unwrap();
        let scan = &engine.explain(&plan).await.unwrap().scans[0];
        assert_eq!(
            scan.after.files, 2,
            "ids 1-8 are in the first two days' files"
        );

        let range = Query {
            partition_date: Some(tarn::PartitionDate::Range {
                from: day,
                to: day + chrono::Days::new(2),
            }),
            ..Query::from("raw/ev")
        };
        let plan = engine.plan_query(&range).await.unwrap();
        assert_eq!(engine.explain(&plan).await.unwrap().scans[0].after.files, 3);
    })
    .await;
}

#[tokio::test]
async fn cache_serves_repeats_and_never_stale_data() {
    each_backend(|t| async move {
        ingest(&t, "a.csv", events_csv(2, 5, 1)).await;
        let q = "SELECT count(*) FROM raw.ev";
        let first = t.lake.sql(q).await.unwrap();
        assert_eq!(first.cache, CacheStatus::Miss);
        assert_eq!(count(&first.collect().await.unwrap()), 10);
        let again = t.lake.sql("select   COUNT(*)\nfrom raw.ev").await.unwrap();
        assert_eq!(again.cache, CacheStatus::Hit, "same plan, other spelling");
        assert_eq!(count(&again.collect().await.unwrap()), 10);

        // A commit by an ingest changes the table version: the entry is unreachable.
        ingest(&t, "b.csv", events_csv(1, 7, 100)).await;
        let after = t.lake.sql(q).await.unwrap();
        assert_eq!(after.cache, CacheStatus::Miss);
        assert_eq!(after.tables[0].version, 2);
        assert_eq!(count(&after.collect().await.unwrap()), 17);

        // The same query from another DataLake (another process) sees the commit too.
        let other = DataLake::open(t.lake.config().clone()).await.unwrap();
        ingest(&t, "c.csv", events_csv(1, 1, 200)).await;
        assert_eq!(count(&sql(&other, q).await), 18);

        let volatile = t
            .lake
            .sql("SELECT count(*), random() FROM raw.ev")
            .await
            .unwrap();
        assert_eq!(volatile.cache, CacheStatus::Bypass);
        let system = t.lake.sql("SELECT * FROM system.runs").await.unwrap();
        assert_eq!(system.cache, CacheStatus::Bypass);
        drop((volatile, system));

        let stats = sql(
            &t.lake,
            "SELECT hits, misses, bypassed, entries FROM system.cache",
        )
        .await;
        let col = |i: usize| {
            stats[0]
                .column(i)
                .as_primitive::<arrow::datatypes::UInt64Type>()
                .value(0)
        };
        assert_eq!((col(0), col(1)), (1, 2), "the other lake has its own cache");
        assert!(col(2) >= 2 && col(3) >= 2);
    })
    .await;
}

#[tokio::test]
async fn time_travel_reads_older_versions() {
    each_backend(|t| async move {
        ingest(&t, "a.csv", events_csv(1, 3, 1)).await;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let between = chrono::Utc::now();
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        ingest(&t, "b.csv", events_csv(1, 4, 10)).await;

        assert_eq!(count(&sql(&t.lake, "SELECT count(*) FROM raw.ev").await), 7);
        assert_eq!(
            count(&sql(&t.lake, r#"SELECT count(*) FROM raw."ev@v1""#).await),
            3
        );
        let as_of = format!(
            r#"SELECT count(*) FROM raw."ev@{}""#,
            between.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        assert_eq!(count(&sql(&t.lake, &as_of).await), 3, "{as_of}");
        let old = t.lake.query_data(&Query::from("raw/ev@v1")).await.unwrap();
        assert_eq!(old.tables[0].version, 1);
        assert_eq!(ids(&old.collect().await.unwrap()).len(), 3);
    })
    .await;
}

#[tokio::test]
async fn statistics_follow_writes_and_analyze_adds_distinct_counts() {
    each_backend(|t| async move {
        ingest(&t, "a.csv", events_csv(4, 3, 1)).await;
        let meta = t.lake.metadata();
        let stats = meta.table_statistics(Zone::Raw, "ev").await.unwrap().unwrap();
        assert_eq!((stats.row_count, stats.file_count, stats.delta_version), (12, 4, 1));
        let amount = stats.columns.iter().find(|c| c.name == "amount").unwrap();
        assert_eq!(amount.null_count, Some(8), "2 of 3 events a day are views");
        assert_eq!((amount.min.as_deref(), amount.max.as_deref()), (Some("0.5"), Some("0.5")));
        let day = stats.columns.iter().find(|c| c.name == "_partition_date").unwrap();
        assert_eq!(
            (day.min.as_deref(), day.max.as_deref(), day.null_count),
            (Some("2024-01-01"), Some("2024-01-04"), Some(0))
        );
        assert_eq!(amount.distinct_count, None, "only analyze counts distinct values");

        let analyzed = t.lake.statistics().analyze(Zone::Raw, "ev").await.unwrap();
        let kind = analyzed.columns.iter().find(|c| c.name == "kind").unwrap();
        assert_eq!((kind.distinct_count, kind.distinct_version), (Some(2), Some(1)));
        let id = analyzed.columns.iter().find(|c| c.name == "id").unwrap();
        assert_eq!(id.distinct_count, Some(12));

        // A later write refreshes counts and keeps the distinct estimates, marked with their version.
        ingest(&t, "b.csv", events_csv(1, 2, 100)).await;
        let stats = meta.table_statistics(Zone::Raw, "ev").await.unwrap().unwrap();
        assert_eq!((stats.row_count, stats.delta_version), (14, 2));
        let kind = stats.columns.iter().find(|c| c.name == "kind").unwrap();
        assert_eq!((kind.distinct_count, kind.distinct_version), (Some(2), Some(1)));

        let rows = sql(
            &t.lake,
            "SELECT row_count, null_count FROM system.statistics WHERE dataset = 'ev' AND \"column\" = 'amount'",
        )
        .await;
        let row_count = rows[0].column(0).as_primitive::<arrow::datatypes::UInt64Type>();
        assert_eq!(row_count.value(0), 14);
        assert!(!rows[0].column(1).is_null(0));
    })
    .await;
}
