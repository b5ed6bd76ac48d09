//! File ingestion: validation, quarantine, reconciliation, exactly-once and
//! failure atomicity, for every input format and on every backend.

use std::sync::Arc;

use arrow::array::{
    Array, AsArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use tarn::{DataSpec, Format, IngestionStatus, RunStatus, SchemaEvolution, Zone};

use crate::support::{SAMPLE_AVSC, SAMPLE_CSV, TestLake, each_backend};

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn sum_i64(batches: &[RecordBatch], column: &str) -> i64 {
    batches
        .iter()
        .map(|b| {
            b.column_by_name(column)
                .unwrap()
                .as_primitive::<Int64Type>()
                .iter()
                .flatten()
                .sum::<i64>()
        })
        .sum()
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(column)
                .unwrap()
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap_or("").to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn sample_spec(t: &TestLake) -> DataSpec {
    let avsc = t.put("user_events.avsc", SAMPLE_AVSC).await;
    let csv = t.put("user_events.csv", SAMPLE_CSV).await;
    DataSpec::new("user_events", csv)
        .with_schema(avsc)
        .with_partition_key("timestamp")
}

#[tokio::test]
async fn csv_records_are_validated_quarantined_and_reconciled() {
    each_backend(|t| async move {
        let result = t
            .lake
            .ingest_data("file", sample_spec(&t).await)
            .await
            .unwrap();
        let m = &result.metadata;
        assert_eq!(result.status, IngestionStatus::Partial, "{}", t.backend);
        assert_eq!(
            (m.rows_read, m.rows_written, m.rows_quarantined),
            (18, 13, 5)
        );
        assert_eq!(m.rows_read, m.rows_written + m.rows_quarantined);

        let raw = t.read(Zone::Raw, "user_events").await;
        assert_eq!(rows(&raw), 13);
        // user_id of the 13 valid sample rows.
        let expected: i64 = [
            1001, 1001, 1001, 1001, 1002, 1003, 1003, 1004, 1005, 1005, 1006, 1006, 1006,
        ]
        .iter()
        .sum();
        assert_eq!(sum_i64(&raw, "user_id"), expected);
        let schema = raw[0].schema();
        for col in ["_ingest_run_id", "_ingest_source", "_ingested_at"] {
            assert!(schema.field_with_name(col).is_ok(), "missing {col}");
        }
        assert!(
            strings(&raw, "_ingest_source")
                .iter()
                .all(|s| s.contains("user_events.csv:")),
        );
        assert_eq!(
            schema.field_with_name("timestamp").unwrap().data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );

        let q = t.read_quarantine("user_events").await;
        assert_eq!(rows(&q), 5);
        let reasons = strings(&q, "reason");
        for expected in [
            "invalid timestamp-millis value `not-a-timestamp`",
            "required field `user_id`",
            "`refund` is not a symbol",
            "unbalanced quote",
            "expected 6 fields, found 7",
        ] {
            assert!(
                reasons.iter().any(|r| r.contains(expected)),
                "no quarantine reason contains {expected:?}: {reasons:?}"
            );
        }
        let positions: Vec<i64> = q
            .iter()
            .flat_map(|b| {
                b.column_by_name("position")
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        let mut sorted = positions.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [7, 9, 11, 13, 15],
            "source lines of the bad records"
        );
        let payloads = strings(&q, "payload");
        assert!(payloads.iter().any(|p| p.contains("not-a-timestamp")));
        assert!(strings(&q, "run_id").iter().all(|r| r == &m.run_id));

        // The run and its counts are in the catalog.
        let runs = t.lake.metadata().runs("user_events", 5).await.unwrap();
        assert_eq!(runs[0].status, RunStatus::Partial);
        assert_eq!(
            (
                runs[0].rows_read,
                runs[0].rows_written,
                runs[0].rows_quarantined
            ),
            (18, 13, 5)
        );
        let details = t.lake.catalog_show("user_events").await.unwrap();
        assert_eq!(details.tables[0].stats.as_ref().unwrap().rows, 13);
        assert_eq!(details.quarantine.stats.as_ref().unwrap().rows, 5);
        assert_eq!(details.schema_versions.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_file_lands_exactly_once_unless_forced() {
    each_backend(|t| async move {
        let spec = sample_spec(&t).await;
        let first = t.lake.ingest_data("file", spec.clone()).await.unwrap();
        let v = t.version(Zone::Raw, "user_events").await;

        let again = t.lake.ingest_data("file", spec.clone()).await.unwrap();
        assert_eq!(again.status, IngestionStatus::Skipped);
        assert_eq!(again.metadata.rows_written, 0);
        assert_eq!(again.metadata.files_skipped, 1);
        assert_eq!(
            t.version(Zone::Raw, "user_events").await,
            v,
            "nothing committed"
        );
        assert_eq!(rows(&t.read(Zone::Raw, "user_events").await), 13);

        // Same content under another name is another file.
        let copy = t.put("copy.csv", SAMPLE_CSV).await;
        let mut other = spec.clone();
        other.paths = vec![copy];
        t.lake.ingest_data("file", other).await.unwrap();
        assert_eq!(rows(&t.read(Zone::Raw, "user_events").await), 26);

        let forced = t
            .lake
            .ingest_data("file", spec.with_force(true))
            .await
            .unwrap();
        assert_eq!(forced.metadata.rows_written, first.metadata.rows_written);
        assert_eq!(rows(&t.read(Zone::Raw, "user_events").await), 39);
        assert_eq!(rows(&t.read_quarantine("user_events").await), 15);
    })
    .await;
}

#[tokio::test]
async fn an_unreadable_input_fails_the_run_and_commits_nothing() {
    each_backend(|t| async move {
        let spec = sample_spec(&t).await;
        // A missing file.
        let mut missing = spec.clone();
        missing.paths.push(t.missing("nope.csv"));
        let err = t
            .lake
            .ingest_data("file", missing)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.csv"), "{err}");
        assert_eq!(t.version(Zone::Raw, "user_events").await, None);

        // A good file followed by one that is not Parquet: neither lands.
        let junk = t
            .put("junk.parquet", &b"this is not parquet at all"[..])
            .await;
        let mut bad = spec.clone();
        bad.paths.push(junk);
        let err = t
            .lake
            .ingest_data("file", bad)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("junk.parquet"), "{err}");
        assert!(err.contains("not a Parquet file"), "{err}");
        assert!(rows(&t.read(Zone::Raw, "user_events").await) == 0);
        assert!(rows(&t.read_quarantine("user_events").await) == 0);

        let runs = t.lake.metadata().runs("user_events", 5).await.unwrap();
        assert!(runs.iter().all(|r| r.status == RunStatus::Failed));
        assert!(runs[0].error.as_deref().unwrap().contains("junk.parquet"));

        // The good file still lands afterwards, exactly once.
        t.lake.ingest_data("file", spec).await.unwrap();
        assert_eq!(rows(&t.read(Zone::Raw, "user_events").await), 13);
    })
    .await;
}

#[tokio::test]
async fn an_interrupted_ingest_leaves_nothing_and_a_rerun_lands_once() {
    each_backend(|t| async move {
        // Enough rows that the ingest is still running when it is aborted.
        let mut csv = String::from("event_id,user_id,event_type,timestamp,amount,country\n");
        for i in 0..200_000 {
            csv.push_str(&format!(
                "0b6c8f1e-8a44-4d0e-9a51-{i:012},{i},view,2024-02-10T09:15:00Z,,DE\n"
            ));
        }
        let avsc = t.put("e.avsc", SAMPLE_AVSC).await;
        let path = t.put("big.csv", csv).await;
        let spec = DataSpec::new("big", path).with_schema(avsc);
        let lake = t.lake.clone();
        let s = spec.clone();
        let task = tokio::spawn(async move { lake.ingest_data("file", s).await });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        task.abort();
        let _ = task.await;
        let landed = rows(&t.read(Zone::Raw, "big").await);
        assert!(landed == 0 || landed == 200_000, "partial commit: {landed}");

        let r = t.lake.ingest_data("file", spec).await.unwrap();
        assert!(r.status == IngestionStatus::Success || r.status == IngestionStatus::Skipped);
        assert_eq!(rows(&t.read(Zone::Raw, "big").await), 200_000);
    })
    .await;
}

#[tokio::test]
async fn ndjson_and_json_arrays_are_validated_per_record() {
    each_backend(|t| async move {
        let avsc = t.put("e.avsc", SAMPLE_AVSC).await;
        let good = |id: i64, ty: &str| {
            format!(
                r#"{{"event_id":"0b6c8f1e-8a44-4d0e-9a51-3f1a2b7c9d{id:02}","user_id":{id},"event_type":"{ty}","timestamp":"2024-02-10T09:15:00Z","amount":12.5}}"#
            )
        };
        let ndjson = [
            good(1, "view"),
            "{not json".to_string(),
            good(2, "click"),
            good(3, "teleport"),
            r#"{"event_id":"0b6c8f1e-8a44-4d0e-9a51-3f1a2b7c9d04","user_id":"four","event_type":"view","timestamp":1707556500000}"#.to_string(),
            String::new(),
            r#"{"event_id":"0b6c8f1e-8a44-4d0e-9a51-3f1a2b7c9d05","user_id":5,"event_type":"view","timestamp":1707556500000}"#.to_string(),
        ]
        .join("\n");
        let path = t.put("events.ndjson", ndjson).await;
        let r = t
            .lake
            .ingest_data("file", DataSpec::new("ev", path).with_schema(avsc.clone()))
            .await
            .unwrap();
        let m = &r.metadata;
        assert_eq!((m.rows_read, m.rows_written, m.rows_quarantined), (6, 3, 3), "{}", t.backend);
        let q = t.read_quarantine("ev").await;
        let reasons = strings(&q, "reason");
        assert!(reasons.iter().any(|r| r.starts_with("invalid JSON")), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("invalid long value `four`")), "{reasons:?}");
        assert!(strings(&q, "payload").iter().any(|p| p == "{not json"));
        let raw = t.read(Zone::Raw, "ev").await;
        assert_eq!(sum_i64(&raw, "user_id"), 1 + 2 + 5);

        let array = format!("[{}, 42, {}]", good(6, "view"), good(7, "nope"));
        let path = t.put("events.json", array).await;
        let r = t
            .lake
            .ingest_data("file", DataSpec::new("ev", path).with_schema(avsc))
            .await
            .unwrap();
        let m = &r.metadata;
        assert_eq!((m.rows_read, m.rows_written, m.rows_quarantined), (3, 1, 2));
    })
    .await;
}

fn parquet_bytes(batch: &RecordBatch) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    buf
}

#[tokio::test]
async fn parquet_input_is_cast_and_checked() {
    each_backend(|t| async move {
        let avsc = t.put("e.avsc", SAMPLE_AVSC).await;
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, true),
            Field::new("user_id", DataType::Int64, true),
            Field::new("event_type", DataType::Utf8, true),
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                true,
            ),
        ]));
        let ids = (1..=4).map(|i| Some(format!("0b6c8f1e-8a44-4d0e-9a51-3f1a2b7c9d0{i}")));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter(ids)),
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(4)])),
                Arc::new(StringArray::from(vec!["view", "view", "warp", "purchase"])),
                Arc::new(TimestampMillisecondArray::from(vec![1_707_556_500_000; 4])),
            ],
        )
        .unwrap();
        let path = t.put("events.parquet", parquet_bytes(&batch)).await;
        let r = t
            .lake
            .ingest_data("file", DataSpec::new("pq", path).with_schema(avsc))
            .await
            .unwrap();
        let m = &r.metadata;
        assert_eq!(
            (m.rows_read, m.rows_written, m.rows_quarantined),
            (4, 2, 2),
            "{}",
            t.backend
        );
        let raw = t.read(Zone::Raw, "pq").await;
        assert_eq!(sum_i64(&raw, "user_id"), 5);
        let ts = raw[0].column_by_name("timestamp").unwrap();
        assert_eq!(
            ts.as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .value(0),
            1_707_556_500_000_000
        );
        let q = t.read_quarantine("pq").await;
        let payloads = strings(&q, "payload");
        assert!(
            payloads.iter().any(|p| p.contains("\"warp\"")),
            "{payloads:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn avro_container_files_are_read_and_validated() {
    each_backend(|t| async move {
        let avsc = t.put("e.avsc", SAMPLE_AVSC).await;
        // The writer schema is looser than the dataset's: event_type is a plain string.
        let writer_schema = apache_avro::Schema::parse_str(
            r#"{"type":"record","name":"e","fields":[
                {"name":"event_id","type":{"type":"string","logicalType":"uuid"}},
                {"name":"user_id","type":["null","long"]},
                {"name":"event_type","type":"string"},
                {"name":"timestamp","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"amount","type":["null",{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}]}
            ]}"#,
        )
        .unwrap();
        let mut w = apache_avro::Writer::new(&writer_schema, Vec::new());
        for (i, ty, user) in [(1, "view", Some(1i64)), (2, "beam", Some(2)), (3, "click", None), (4, "purchase", Some(4))] {
            use apache_avro::types::Value;
            let record = Value::Record(vec![
                ("event_id".into(), Value::Uuid(format!("0b6c8f1e-8a44-4d0e-9a51-3f1a2b7c9d0{i}").parse().unwrap())),
                ("user_id".into(), match user {
                    Some(u) => Value::Union(1, Box::new(Value::Long(u))),
                    None => Value::Union(0, Box::new(Value::Null)),
                }),
                ("event_type".into(), Value::String(ty.into())),
                ("timestamp".into(), Value::TimestampMillis(1_707_556_500_000)),
                ("amount".into(), Value::Union(1, Box::new(Value::Decimal(apache_avro::Decimal::from(vec![0x04, 0xD2]))))),
            ]);
            w.append(record).unwrap();
        }
        let path = t.put("events.avro", w.into_inner().unwrap()).await;
        let r = t
            .lake
            .ingest_data("file", DataSpec::new("av", path).with_schema(avsc))
            .await
            .unwrap();
        let m = &r.metadata;
        assert_eq!((m.rows_read, m.rows_written, m.rows_quarantined), (4, 2, 2), "{}", t.backend);
        let raw = t.read(Zone::Raw, "av").await;
        assert_eq!(sum_i64(&raw, "user_id"), 5);
        let amount = raw[0].column_by_name("amount").unwrap();
        assert_eq!(amount.data_type(), &DataType::Decimal128(10, 2));
        assert_eq!(amount.as_primitive::<arrow::datatypes::Decimal128Type>().value(0), 1234);
    })
    .await;
}

#[tokio::test]
async fn without_a_schema_one_is_inferred_pinned_and_enforced() {
    each_backend(|t| async move {
        let first = t
            .put("a.csv", "id,name,at\n1,ann,2024-01-01T00:00:00Z\n2,bob,2024-01-02T00:00:00Z\n")
            .await;
        let r = t.lake.ingest_data("file", DataSpec::new("people", first)).await.unwrap();
        assert_eq!(r.metadata.rows_written, 2);
        assert_eq!(r.metadata.schema_version, 1);
        let pinned = t.lake.metadata().latest_schema("people").await.unwrap().unwrap();
        let schema = tarn::DatasetSchema::from_avsc(&pinned.schema_avsc).unwrap();
        let types: Vec<String> = schema.fields.iter().map(|f| f.field_type.name()).collect();
        assert_eq!(types, ["long", "string", "timestamp-micros"]);

        // Strict (the default): a new column or a changed type is quarantined.
        let second = t
            .put("b.csv", "id,name,at,email\n3,cy,2024-01-03T00:00:00Z,c@x.io\nfour,dee,2024-01-04T00:00:00Z,\n5,eve,2024-01-05T00:00:00Z,\n")
            .await;
        let r = t
            .lake
            .ingest_data("file", DataSpec::new("people", second.clone()))
            .await
            .unwrap();
        assert_eq!((r.metadata.rows_written, r.metadata.rows_quarantined), (1, 2));
        let reasons = strings(&t.read_quarantine("people").await, "reason");
        assert!(reasons.iter().any(|r| r.contains("unknown field `email`")), "{reasons:?}");

        // Additive: the new column is added and a new schema version pinned.
        let third = t
            .put("c.csv", "id,name,at,email\n6,fay,2024-01-06T00:00:00Z,f@x.io\n")
            .await;
        let r = t
            .lake
            .ingest_data(
                "file",
                DataSpec::new("people", third).with_schema_evolution(SchemaEvolution::Additive),
            )
            .await
            .unwrap();
        assert_eq!(r.metadata.rows_written, 1);
        assert_eq!(r.metadata.schema_version, 2);
        let raw = t.read(Zone::Raw, "people").await;
        assert_eq!(rows(&raw), 4);
        assert!(strings(&raw.iter().filter(|b| b.schema().field_with_name("email").is_ok()).cloned().collect::<Vec<_>>(), "email").contains(&"f@x.io".to_string()));
    })
    .await;
}

#[tokio::test]
async fn directories_and_globs_select_files_and_bad_requests_are_clear() {
    each_backend(|t| async move {
        let avsc = t.put("e.avsc", SAMPLE_AVSC).await;
        let a = t.put("day/a.csv", SAMPLE_CSV).await;
        t.put("day/b.csv", SAMPLE_CSV).await;
        t.put("day/notes.txt.bak", "ignored").await;
        let glob = a.replace("a.csv", "*.csv");
        let r = t
            .lake
            .ingest_data("file", DataSpec::new("g", glob).with_schema(avsc.clone()))
            .await
            .unwrap();
        assert_eq!(r.metadata.files_ingested, 2);
        assert_eq!(r.metadata.rows_written, 26);

        let none = a.replace("a.csv", "*.parquet");
        let err = t
            .lake
            .ingest_data("file", DataSpec::new("g", none).with_schema(avsc.clone()))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no files match"), "{err}");

        let bad_key = DataSpec::new("g2", a.clone())
            .with_schema(avsc.clone())
            .with_partition_key("country");
        let err = t
            .lake
            .ingest_data("file", bad_key)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("partition key `country` must be a timestamp"),
            "{err}"
        );

        let err = t
            .lake
            .ingest_data("kafka", DataSpec::new("g", a.clone()))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("kafka"), "{err}");

        let forced_format = DataSpec::new("g3", a)
            .with_schema(avsc)
            .with_format(Format::Ndjson);
        let r = t.lake.ingest_data("file", forced_format).await.unwrap();
        assert_eq!(r.metadata.rows_written, 0, "CSV lines are not JSON objects");
        assert_eq!(r.metadata.rows_quarantined, r.metadata.rows_read);
    })
    .await;
}

#[tokio::test]
async fn concurrent_ingests_into_one_new_dataset_both_land() {
    each_backend(|t| async move {
        let avsc = t.put("e.avsc", SAMPLE_AVSC).await;
        let a = t.put("a.csv", SAMPLE_CSV).await;
        let b = t.put("b.csv", SAMPLE_CSV).await;
        let spec = |p: String| DataSpec::new("together", p).with_schema(avsc.clone());
        let (ra, rb) = tokio::join!(
            t.lake.ingest_data("file", spec(a)),
            t.lake.ingest_data("file", spec(b))
        );
        assert_eq!(ra.unwrap().metadata.rows_written, 13, "{}", t.backend);
        assert_eq!(rb.unwrap().metadata.rows_written, 13);
        assert_eq!(rows(&t.read(Zone::Raw, "together").await), 26);
        assert_eq!(rows(&t.read_quarantine("together").await), 10);
    })
    .await;
}
