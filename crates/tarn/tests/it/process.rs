//! `process_data`: raw → cleansed → curated → consumption through the
//! `DataLake` API, incremental and exactly-once, with quarantine, quality
//! gates, enrichment, partitioning, marts, lineage and policies, on every
//! backend.

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use tarn::{DataLake, DataSpec, ProcessOptions, ProcessingResult, StageStatus, Zone};

use crate::support::{TestLake, each_backend_with, local_lake_with};

const EV_AVSC: &str = r#"{"type": "record", "name": "ev", "fields": [
  {"name": "id", "type": "long"},
  {"name": "rev", "type": "long"},
  {"name": "name", "type": "string"},
  {"name": "amount", "type": ["null", "string"], "default": null},
  {"name": "email", "type": ["null", "string"], "default": null},
  {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}}]}"#;

/// The pipeline under test: standardize, dedup by id keeping the highest rev,
/// redact email; quarantine negative amounts, look up the team by name,
/// partition by day; a daily mart.
const PIPELINE: &str = r#"
datasets:
  ev:
    cleanse:
      trim: [name]
      case: { name: lower }
      cast: { amount: "DECIMAL(10,2)" }
      dedup: { keys: [id], order_by: rev }
      mask: { email: redact }
    curate:
      expectations:
        - { name: positive, between: { column: amount, min: 0 }, severity: quarantine }
        - { name: some_rows, row_count: { min: 1 }, severity: fail }
      derive: { big: "amount > 10" }
      lookups: [{ dataset: teams, key: name, columns: [team] }]
      partition: { by: day, column: ts }
    consume:
      marts:
        ev_daily: SELECT _partition_date AS day, count(*) AS n, sum(amount) AS total FROM curated.ev GROUP BY 1
"#;

const DAY1: &str = "id,rev,name,amount,email,ts
1,1, Alice ,10.50,a@x.com,2024-01-01T10:00:00Z
1,2, ALICE ,11.00,a@x.com,2024-01-01T10:00:00Z
2,1,bob,abc,b@x.com,2024-01-02T10:00:00Z
3,1,carol,-5,c@x.com,2024-01-02T11:00:00Z
4,1,dave,2.00,,2024-01-02T12:00:00Z
";

/// Late data: an older revision of 1 (ignored), a newer one of 4, and 5.
const DAY2: &str = "id,rev,name,amount,email,ts
1,0,alice,99.00,a@x.com,2024-01-01T10:00:00Z
4,2,dave,20.00,,2024-01-02T12:00:00Z
5,1,erin,1.00,e@x.com,2024-01-03T09:00:00Z
";

async fn ingest(t: &TestLake, file: &str, csv: &str) {
    let avsc = t.put("ev.avsc", EV_AVSC).await;
    let path = t.put(file, csv.to_string()).await;
    let spec = DataSpec::new("ev", path).with_schema(avsc);
    t.lake.ingest_data("file", spec).await.unwrap();
}

async fn ingest_teams(t: &TestLake) {
    let path = t
        .put("teams.csv", "name,team\nalice,red\nbob,blue\ndave,red\n")
        .await;
    t.lake
        .ingest_data("file", DataSpec::new("teams", path))
        .await
        .unwrap();
}

/// The rows of `sql`, each as its values formatted as text ("" for null).
async fn rows(lake: &DataLake, sql: &str) -> Vec<Vec<String>> {
    let batches: Vec<RecordBatch> = lake.sql(sql).await.unwrap().collect().await.unwrap();
    let options = FormatOptions::default();
    let mut out = Vec::new();
    for b in &batches {
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            out.push(formatters.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    out
}

fn stage<'a>(r: &'a ProcessingResult, name: &str) -> &'a tarn::StageResult {
    r.stages
        .iter()
        .find(|s| s.stage == name)
        .unwrap_or_else(|| panic!("no {name} stage in {r:?}"))
}

/// (rows_in, rows_out, rows_quarantined, rows_deduplicated) of a stage.
fn counts(r: &ProcessingResult, name: &str) -> (u64, u64, u64, u64) {
    let s = stage(r, name);
    (
        s.rows_in,
        s.rows_out,
        s.rows_quarantined,
        s.rows_deduplicated,
    )
}

#[tokio::test]
async fn process_promotes_new_data_through_every_zone_exactly_once() {
    each_backend_with(PIPELINE, |t| async move {
        let b = t.backend;
        ingest_teams(&t).await;
        ingest(&t, "day1.csv", DAY1).await;
        let first = t.lake.process_data("raw/ev").await.unwrap();
        assert!(first.is_success(), "{b}: {first:?}");
        assert_eq!(counts(&first, "cleanse"), (5, 3, 1, 1), "{b}: cleanse");
        assert_eq!(counts(&first, "curate"), (3, 2, 1, 0), "{b}: curate");
        assert_eq!(stage(&first, "consume").table, "consumption/ev_daily");

        // Cleansed: typed, trimmed, lower-cased, deduplicated, masked.
        assert_eq!(
            rows(
                &t.lake,
                "SELECT id, rev, name, amount, email FROM cleansed.ev ORDER BY id"
            )
            .await,
            [
                ["1", "2", "alice", "11.00", "REDACTED"],
                ["3", "1", "carol", "-5.00", "REDACTED"],
                ["4", "1", "dave", "2.00", ""],
            ],
            "{b}"
        );
        let q = t.read(Zone::Cleansed, "_quarantine/ev").await;
        assert_eq!(q.iter().map(RecordBatch::num_rows).sum::<usize>(), 1, "{b}");
        let reasons = q[0].column_by_name("_reason").unwrap();
        let formatter =
            ArrayFormatter::try_new(reasons.as_ref(), &FormatOptions::default()).unwrap();
        assert_eq!(
            formatter.value(0).to_string(),
            "amount: 'abc' is not a DECIMAL(10,2)",
            "{b}"
        );

        // Curated: enriched, derived, partitioned; the negative amount quarantined.
        assert_eq!(
            rows(
                &t.lake,
                "SELECT id, team, big, _partition_date FROM curated.ev ORDER BY id"
            )
            .await,
            [
                ["1", "red", "true", "2024-01-01"],
                ["4", "red", "false", "2024-01-02"],
            ],
            "{b}"
        );
        let cq = t.read(Zone::Curated, "_quarantine/ev").await;
        let expectations = cq[0].column_by_name("_expectations").unwrap();
        let formatter =
            ArrayFormatter::try_new(expectations.as_ref(), &FormatOptions::default()).unwrap();
        assert_eq!(formatter.value(0).to_string(), "positive", "{b}");

        assert_eq!(
            rows(
                &t.lake,
                "SELECT day, n, total FROM consumption.ev_daily ORDER BY day"
            )
            .await,
            [["2024-01-01", "1", "11.00"], ["2024-01-02", "1", "2.00"]],
            "{b}"
        );

        // Nothing new: every stage skips and nothing is committed.
        let versions = |z: Zone, n: &'static str| t.version(z, n);
        let before = (
            versions(Zone::Cleansed, "ev").await,
            versions(Zone::Curated, "ev").await,
            versions(Zone::Consumption, "ev_daily").await,
        );
        let again = t.lake.process_data("ev").await.unwrap();
        assert_eq!(again.status, StageStatus::Skipped, "{b}: {again:?}");
        assert!(again.stages.iter().all(|s| s.rows_in == 0), "{b}");
        let after = (
            versions(Zone::Cleansed, "ev").await,
            versions(Zone::Curated, "ev").await,
            versions(Zone::Consumption, "ev_daily").await,
        );
        assert_eq!(before, after, "{b}");

        // Lineage: each ingest's files and each stage's inputs and output,
        // with versions.
        let facts = t.lake.metadata().lineage_facts().await.unwrap();
        let ingests: Vec<(&str, &str)> = facts
            .iter()
            .filter(|f| f.job.starts_with("ingest:"))
            .map(|f| (f.job.as_str(), f.outputs[0].table.as_str()))
            .collect();
        assert_eq!(
            ingests,
            [("ingest:teams", "raw/teams"), ("ingest:ev", "raw/ev")],
            "{b}"
        );
        assert!(
            facts
                .iter()
                .filter(|f| f.job == "ingest:ev")
                .all(|f| f.inputs[0].table.ends_with("/incoming/day1.csv")),
            "{b}"
        );
        let facts: Vec<_> = facts
            .into_iter()
            .filter(|f| !f.job.starts_with("ingest:"))
            .collect();
        let jobs: Vec<(&str, Vec<&str>, &str)> = facts
            .iter()
            .map(|f| {
                (
                    f.job.as_str(),
                    f.inputs.iter().map(|i| i.table.as_str()).collect(),
                    f.outputs[0].table.as_str(),
                )
            })
            .collect();
        assert_eq!(
            jobs,
            [
                ("cleanse:ev", vec!["raw/ev"], "cleansed/ev"),
                ("curate:ev", vec!["cleansed/ev", "raw/teams"], "curated/ev"),
                (
                    "consume:ev_daily",
                    vec!["curated/ev"],
                    "consumption/ev_daily"
                ),
            ],
            "{b}"
        );
        let team = facts[1]
            .columns
            .iter()
            .find(|c| c.column == "team")
            .unwrap();
        assert!(
            team.inputs.contains(&"raw/teams.team".to_string()),
            "{b}: {team:?}"
        );
        let big = facts[1].columns.iter().find(|c| c.column == "big").unwrap();
        assert_eq!(big.inputs, ["cleansed/ev.amount"], "{b}");
        let mart: Vec<(&str, Vec<&str>)> = facts[2]
            .columns
            .iter()
            .map(|c| {
                (
                    c.column.as_str(),
                    c.inputs.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            mart,
            [
                ("day", vec!["curated/ev._partition_date"]),
                ("n", vec![]),
                ("total", vec!["curated/ev.amount"]),
            ],
            "{b}"
        );
    })
    .await;
}

#[tokio::test]
async fn late_rows_upsert_by_key_and_only_new_data_is_processed() {
    each_backend_with(PIPELINE, |t| async move {
        let b = t.backend;
        ingest_teams(&t).await;
        ingest(&t, "day1.csv", DAY1).await;
        t.lake.process_data("ev").await.unwrap();
        let mart_v1 = t.version(Zone::Consumption, "ev_daily").await;
        ingest(&t, "day2.csv", DAY2).await;
        let second = t.lake.process_data("ev").await.unwrap();
        assert!(second.is_success(), "{b}: {second:?}");
        assert_eq!(
            counts(&second, "cleanse"),
            (3, 3, 0, 0),
            "{b}: only day 2 is read"
        );
        assert_eq!(
            rows(
                &t.lake,
                "SELECT id, rev, amount FROM cleansed.ev ORDER BY id"
            )
            .await,
            [
                ["1", "2", "11.00"],
                ["3", "1", "-5.00"],
                ["4", "2", "20.00"],
                ["5", "1", "1.00"],
            ],
            "{b}: the older revision of 1 changed nothing, the newer one of 4 replaced it"
        );
        // The curate stage reads what changed in cleansed: 4 and 5 (1 was untouched).
        assert_eq!(counts(&second, "curate"), (2, 2, 0, 0), "{b}");
        assert_eq!(
            rows(
                &t.lake,
                "SELECT id, amount, team FROM curated.ev ORDER BY id"
            )
            .await,
            [
                ["1", "11.00", "red"],
                ["4", "20.00", "red"],
                ["5", "1.00", ""]
            ],
            "{b}"
        );
        assert_eq!(
            rows(
                &t.lake,
                "SELECT day, total FROM consumption.ev_daily ORDER BY day"
            )
            .await,
            [
                ["2024-01-01", "11.00"],
                ["2024-01-02", "20.00"],
                ["2024-01-03", "1.00"]
            ],
            "{b}"
        );
        assert!(
            t.version(Zone::Consumption, "ev_daily").await > mart_v1,
            "{b}"
        );
        let raw_version = t.version(Zone::Raw, "ev").await.unwrap();
        assert_eq!(
            stage(&second, "cleanse").input_versions.get("raw/ev"),
            Some(&raw_version),
            "{b}"
        );

        // A full refresh rebuilds the same tables from all of raw.
        let full = t
            .lake
            .process_with(
                "ev",
                ProcessOptions {
                    full_refresh: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(full.is_success(), "{b}: {full:?}");
        assert_eq!(counts(&full, "cleanse"), (8, 4, 1, 3), "{b}");
        assert_eq!(
            rows(
                &t.lake,
                "SELECT id, rev, amount FROM cleansed.ev ORDER BY id"
            )
            .await,
            [
                ["1", "2", "11.00"],
                ["3", "1", "-5.00"],
                ["4", "2", "20.00"],
                ["5", "1", "1.00"],
            ],
            "{b}"
        );
        assert_eq!(
            t.read(Zone::Cleansed, "_quarantine/ev")
                .await
                .iter()
                .map(RecordBatch::num_rows)
                .sum::<usize>(),
            1,
            "{b}: the quarantine is rebuilt, not appended to"
        );
    })
    .await;
}

#[tokio::test]
async fn a_failed_fail_expectation_commits_nothing_and_is_recorded() {
    let strict = PIPELINE.replace(
        "row_count: { min: 1 }, severity: fail",
        "row_count: { max: 2 }, severity: fail",
    );
    let t = local_lake_with(&strict).await;
    ingest_teams(&t).await;
    ingest(&t, "day1.csv", DAY1).await;
    let r = t.lake.process_data("ev").await.unwrap();
    assert_eq!(r.status, StageStatus::Failed);
    let curate = stage(&r, "curate");
    assert_eq!(curate.status, StageStatus::Failed);
    let error = curate.error.as_deref().unwrap();
    assert!(
        error.contains("some_rows") && error.contains("3 rows"),
        "{error}"
    );
    assert_eq!(
        r.stages.len(),
        2,
        "the mart is not refreshed after a failure"
    );
    assert_eq!(
        t.version(Zone::Curated, "ev").await,
        None,
        "nothing committed"
    );
    assert_eq!(
        t.read(Zone::Curated, "_quarantine/ev").await.len(),
        0,
        "not even the quarantine"
    );
    let runs = t.lake.metadata().runs("ev", 10).await.unwrap();
    let failed = runs
        .iter()
        .find(|r| r.source.starts_with("process:curate"))
        .unwrap();
    assert_eq!(failed.status, tarn::RunStatus::Failed);
    assert!(failed.error.as_deref().unwrap().contains("some_rows"));
    let quality = t.lake.quality_history("ev", 1).await.unwrap();
    let gate = quality
        .iter()
        .find(|q| q.expectation == "some_rows")
        .unwrap();
    assert!(!gate.passed);
    assert_eq!(gate.observed.as_deref(), Some("3 rows"));
    let positive = quality
        .iter()
        .find(|q| q.expectation == "positive")
        .unwrap();
    assert_eq!((positive.failed_rows, positive.evaluated_rows), (1, 3));
}

#[tokio::test]
async fn policies_mask_classified_columns_and_apply_retention() {
    let unmasked = format!(
        "{}\n    classifications: {{ email: pii, name: pii }}\npolicies:\n  cleansed: {{ required_masking: [pii] }}\n",
        PIPELINE.trim_end()
    );
    let t = local_lake_with(&unmasked).await;
    ingest(&t, "day1.csv", DAY1).await;
    let err = t.lake.process_data("ev").await.unwrap_err().to_string();
    assert!(
        err.contains("`name`") && err.contains("classified `pii`") && err.contains("cleanse.mask"),
        "{err}"
    );

    let retained = format!(
        "{}\npolicies:\n  curated: {{ retention: {{ column: ts, days: 30 }}, vacuum_hours: 0 }}\n",
        PIPELINE.trim_end()
    );
    let t = local_lake_with(&retained).await;
    ingest_teams(&t).await;
    ingest(&t, "day1.csv", DAY1).await;
    t.lake.process_data("ev").await.unwrap();
    let before = t.version(Zone::Curated, "ev").await;
    let dry = t.lake.apply_policies(true).await.unwrap();
    let retention = dry
        .iter()
        .find(|a| a.table == "curated/ev" && a.policy == "retention")
        .unwrap();
    assert_eq!(retention.rows_deleted, 2, "2024 is long past 30 days");
    assert_eq!(t.version(Zone::Curated, "ev").await, before, "dry run");
    let done = t.lake.apply_policies(false).await.unwrap();
    let retention = done
        .iter()
        .find(|a| a.table == "curated/ev" && a.policy == "retention")
        .unwrap();
    assert_eq!(retention.rows_deleted, 2);
    assert!(retention.version > before);
    assert!(rows(&t.lake, "SELECT id FROM curated.ev").await.is_empty());
    let vacuum = done
        .iter()
        .find(|a| a.table == "curated/ev" && a.policy == "vacuum")
        .unwrap();
    assert!(
        !vacuum.files_deleted.is_empty(),
        "the files the delete replaced are vacuumed"
    );
}

#[tokio::test]
async fn optimize_compacts_small_files() {
    let t = local_lake_with(PIPELINE).await;
    ingest(&t, "day1.csv", DAY1).await;
    ingest(&t, "day2.csv", DAY2).await;
    let query = "SELECT * FROM raw.ev ORDER BY id, rev";
    let expected = rows(&t.lake, query).await;
    let report = t
        .lake
        .optimize(Zone::Raw, "ev", &["id".to_string()])
        .await
        .unwrap();
    assert!(report.files_removed > report.files_added, "{report:?}");
    assert!(report.version.is_some());
    assert_eq!(rows(&t.lake, query).await, expected, "same rows");
    let err = t
        .lake
        .optimize(Zone::Raw, "ev", &["nope".to_string()])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no column `nope`"), "{err}");
}

#[tokio::test]
async fn without_keys_an_upstream_rewrite_rebuilds_curated_instead_of_duplicating() {
    let keyless = PIPELINE.replace("      dedup: { keys: [id], order_by: rev }\n", "");
    let t = local_lake_with(&keyless).await;
    ingest_teams(&t).await;
    ingest(&t, "day1.csv", DAY1).await;
    let first = t.lake.process_data("ev").await.unwrap();
    assert_eq!(counts(&first, "cleanse"), (5, 4, 1, 0), "no dedup");
    let cleanse_only = ProcessOptions {
        until: Zone::Cleansed,
        full_refresh: true,
    };
    t.lake.process_with("ev", cleanse_only).await.unwrap();
    let again = t.lake.process_data("ev").await.unwrap();
    assert!(again.is_success(), "{again:?}");
    assert_eq!(
        rows(&t.lake, "SELECT id, rev FROM curated.ev ORDER BY id, rev").await,
        [["1", "1"], ["1", "2"], ["4", "1"]],
        "each cleansed row once, not twice"
    );
}

#[tokio::test]
async fn a_compaction_does_not_refresh_marts_but_new_rows_do() {
    let over_raw = PIPELINE.replace(
        "ev_daily: SELECT _partition_date AS day, count(*) AS n, sum(amount) AS total FROM curated.ev GROUP BY 1",
        "raw_count: SELECT count(*) AS n FROM raw.ev",
    );
    let t = local_lake_with(&over_raw).await;
    ingest_teams(&t).await;
    ingest(&t, "day1.csv", DAY1).await;
    ingest(&t, "day2.csv", DAY2).await;
    t.lake.process_data("ev").await.unwrap();
    let built = t.version(Zone::Consumption, "raw_count").await;
    let report = t.lake.optimize(Zone::Raw, "ev", &[]).await.unwrap();
    assert!(report.version.is_some(), "{report:?}");
    let after = t.lake.process_data("ev").await.unwrap();
    assert_eq!(stage(&after, "consume").status, StageStatus::Skipped);
    assert_eq!(t.version(Zone::Consumption, "raw_count").await, built);

    ingest(
        &t,
        "day3.csv",
        "id,rev,name,amount,email,ts\n9,1,zoe,1.00,,2024-01-04T00:00:00Z\n",
    )
    .await;
    let refreshed = t.lake.process_data("ev").await.unwrap();
    assert_eq!(stage(&refreshed, "consume").status, StageStatus::Succeeded);
    assert_eq!(
        rows(&t.lake, "SELECT n FROM consumption.raw_count").await,
        [["9"]]
    );
}
