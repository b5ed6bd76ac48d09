//! The metadata store conformance suite: one generic body per behaviour, run
//! against real SQLite and the real PostgreSQL server
//! (`TARN_TEST_POSTGRES_URL`, default `postgresql://postgres@127.0.0.1:5432/test`).

use std::future::Future;
use std::sync::Arc;

use chrono::{Duration, SubsecRound, Utc};
use sqlx::Connection;
use tarn_common::Zone;
use tarn_governance::{
    ColumnLineage, ColumnStatistics, DatasetRecord, IngestionRun, LineageFact, LineageTable,
    MetadataStore, QualityResult, RunStatus, TableStatistics, connect,
};

pub(crate) fn postgres_url() -> String {
    std::env::var("TARN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".into())
}

/// Runs `body` against a fresh SQLite file and a fresh PostgreSQL database.
pub(crate) async fn each_backend<F, Fut>(body: F)
where
    F: Fn(Arc<dyn MetadataStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let sqlite = connect(&format!("sqlite://{}/meta.db", dir.path().display()))
        .await
        .expect("open SQLite store");
    body(sqlite).await;

    let admin_url = postgres_url();
    let db = format!("tarn_it_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is required for this suite: {e}"));
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let pg = connect(&format!("{base}/{db}"))
        .await
        .expect("open PostgreSQL store");
    body(pg).await;
    sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

fn dataset(name: &str, zone: Zone) -> DatasetRecord {
    let now = Utc::now();
    DatasetRecord {
        name: name.into(),
        zone,
        location: format!("file:///lake/{zone}/{name}"),
        owner: Some("data-platform".into()),
        description: Some("clickstream".into()),
        tags: vec!["events".into(), "web".into()],
        created_at: now,
        updated_at: now,
    }
}

fn run(id: &str, dataset: &str, started_offset_s: i64) -> IngestionRun {
    IngestionRun {
        id: id.into(),
        dataset: dataset.into(),
        source: "file:incoming/a.csv".into(),
        status: RunStatus::Running,
        started_at: Utc::now() + Duration::seconds(started_offset_s),
        ended_at: None,
        rows_read: 0,
        rows_written: 0,
        rows_quarantined: 0,
        bytes_read: 0,
        delta_version: None,
        error: None,
    }
}

#[tokio::test]
async fn datasets_are_registered_updated_and_listed() {
    each_backend(|store| async move {
        assert!(store.dataset("ev", Zone::Raw).await.unwrap().is_none());
        let d = dataset("ev", Zone::Raw);
        store.upsert_dataset(&d).await.unwrap();
        store
            .upsert_dataset(&dataset("ev", Zone::Curated))
            .await
            .unwrap();
        store
            .upsert_dataset(&dataset("abc", Zone::Raw))
            .await
            .unwrap();

        let got = store.dataset("ev", Zone::Raw).await.unwrap().unwrap();
        assert_eq!(got.location, d.location);
        assert_eq!(got.tags, d.tags);
        assert_eq!(got.owner.as_deref(), Some("data-platform"));

        // An update without owner keeps the owner; tags are replaced.
        let mut upd = dataset("ev", Zone::Raw);
        upd.owner = None;
        upd.tags = vec!["x".into()];
        store.upsert_dataset(&upd).await.unwrap();
        let got = store.dataset("ev", Zone::Raw).await.unwrap().unwrap();
        assert_eq!(got.owner.as_deref(), Some("data-platform"));
        assert_eq!(got.tags, vec!["x".to_string()]);

        let all: Vec<(String, Zone)> = store
            .datasets()
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.name, d.zone))
            .collect();
        // Ordered by name, then zone name.
        assert_eq!(
            all,
            [
                ("abc".to_string(), Zone::Raw),
                ("ev".to_string(), Zone::Curated),
                ("ev".to_string(), Zone::Raw)
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn schema_versions_are_pinned_once_and_numbered() {
    each_backend(|store| async move {
        assert!(store.latest_schema("ev").await.unwrap().is_none());
        let v1 = store.pin_schema("ev", "{\"a\":1}").await.unwrap();
        assert_eq!(v1.version, 1);
        // The same schema again is not a new version.
        let again = store.pin_schema("ev", "{\"a\":1}").await.unwrap();
        assert_eq!(again.version, 1);
        let v2 = store.pin_schema("ev", "{\"a\":2}").await.unwrap();
        assert_eq!(v2.version, 2);
        // Versions are per dataset.
        assert_eq!(store.pin_schema("other", "{}").await.unwrap().version, 1);

        // Concurrent pins of one schema agree on one version.
        let (a, b) = tokio::join!(
            store.pin_schema("race", "{\"r\":1}"),
            store.pin_schema("race", "{\"r\":1}")
        );
        assert_eq!((a.unwrap().version, b.unwrap().version), (1, 1));
        assert_eq!(store.schema_versions("race").await.unwrap().len(), 1);

        let latest = store.latest_schema("ev").await.unwrap().unwrap();
        assert_eq!(latest.schema_avsc, "{\"a\":2}");
        let all = store.schema_versions("ev").await.unwrap();
        assert_eq!(all.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
        assert_ne!(all[0].fingerprint, all[1].fingerprint);
    })
    .await;
}

#[tokio::test]
async fn runs_record_start_outcome_and_counts() {
    each_backend(|store| async move {
        let r1 = run("r1", "ev", -10);
        store.start_run(&r1).await.unwrap();
        let listed = store.runs("ev", 10).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].status, RunStatus::Running);
        assert_eq!(listed[0].ended_at, None);

        let mut done = r1.clone();
        done.status = RunStatus::Partial;
        done.ended_at = Some(Utc::now());
        done.rows_read = 10;
        done.rows_written = 7;
        done.rows_quarantined = 3;
        done.bytes_read = 1234;
        done.delta_version = Some(4);
        store.finish_run(&done).await.unwrap();

        let mut r2 = run("r2", "ev", 0);
        store.start_run(&r2).await.unwrap();
        r2.status = RunStatus::Failed;
        r2.error = Some("file a.csv is not CSV".into());
        r2.ended_at = Some(Utc::now());
        store.finish_run(&r2).await.unwrap();
        store.start_run(&run("r3", "other", 0)).await.unwrap();

        let listed = store.runs("ev", 10).await.unwrap();
        assert_eq!(
            listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["r2", "r1"],
            "newest first, only this dataset"
        );
        let r1 = &listed[1];
        assert_eq!(r1.status, RunStatus::Partial);
        assert_eq!(
            (r1.rows_read, r1.rows_written, r1.rows_quarantined),
            (10, 7, 3)
        );
        assert_eq!(r1.bytes_read, 1234);
        assert_eq!(r1.delta_version, Some(4));
        assert!(r1.ended_at.is_some());
        assert_eq!(listed[0].error.as_deref(), Some("file a.csv is not CSV"));
        assert_eq!(store.runs("ev", 1).await.unwrap().len(), 1);
        let recent = store.recent_runs(10).await.unwrap();
        assert_eq!(
            recent.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["r3", "r2", "r1"],
            "every dataset, newest first"
        );
    })
    .await;
}

fn stats(zone: Zone, dataset: &str, version: i64, rows: u64) -> TableStatistics {
    TableStatistics {
        zone,
        dataset: dataset.into(),
        delta_version: version,
        computed_at: Utc::now(),
        row_count: rows,
        file_count: 2,
        size_bytes: 4096,
        columns: vec![ColumnStatistics {
            name: "amount".into(),
            null_count: Some(1),
            min: Some("0.5".into()),
            max: Some("99".into()),
            distinct_count: Some(42),
            distinct_version: Some(version),
        }],
    }
}

#[tokio::test]
async fn table_statistics_are_replaced_per_table() {
    each_backend(|store| async move {
        assert_eq!(store.table_statistics(Zone::Raw, "ev").await.unwrap(), None);
        store
            .put_table_statistics(&stats(Zone::Raw, "ev", 1, 10))
            .await
            .unwrap();
        let newer = stats(Zone::Raw, "ev", 2, 25);
        store.put_table_statistics(&newer).await.unwrap();
        store
            .put_table_statistics(&stats(Zone::Curated, "ev", 7, 3))
            .await
            .unwrap();
        let got = store.table_statistics(Zone::Raw, "ev").await.unwrap();
        assert_eq!(
            got.as_ref().map(|s| (s.delta_version, s.row_count)),
            Some((2, 25))
        );
        assert_eq!(got.unwrap().columns, newer.columns);
        let all = store.all_table_statistics().await.unwrap();
        assert_eq!(
            all.iter()
                .map(|s| (s.zone, s.delta_version))
                .collect::<Vec<_>>(),
            [(Zone::Curated, 7), (Zone::Raw, 2)]
        );
    })
    .await;
}

/// A result recorded `offset_s` seconds after [`base`] (a run records all its
/// results at one time).
fn quality(run: &str, expectation: &str, passed: bool, offset_s: i64) -> QualityResult {
    QualityResult {
        run_id: run.into(),
        dataset: "ev".into(),
        stage: "curate".into(),
        expectation: expectation.into(),
        check: "not_null".into(),
        severity: "warn".into(),
        passed,
        evaluated_rows: 10,
        failed_rows: if passed { 0 } else { 3 },
        observed: (!passed).then(|| "3 nulls".to_string()),
        recorded_at: base() + Duration::seconds(offset_s),
    }
}

/// A fixed point in time for the quality results.
fn base() -> chrono::DateTime<Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test]
async fn quality_results_are_kept_per_run_newest_first() {
    each_backend(|store| async move {
        store
            .record_quality(&[quality("r1", "a", true, 0), quality("r1", "b", false, 0)])
            .await
            .unwrap();
        store
            .record_quality(&[quality("r2", "a", false, 5)])
            .await
            .unwrap();
        let mut other = quality("r3", "a", true, 9);
        other.dataset = "other".into();
        store.record_quality(&[other]).await.unwrap();

        let all = store.quality_results("ev", 10).await.unwrap();
        assert_eq!(
            all.iter()
                .map(|q| (q.run_id.as_str(), q.expectation.as_str(), q.passed))
                .collect::<Vec<_>>(),
            [("r2", "a", false), ("r1", "a", true), ("r1", "b", false)]
        );
        assert_eq!(all[2].observed.as_deref(), Some("3 nulls"));
        assert_eq!((all[2].evaluated_rows, all[2].failed_rows), (10, 3));
        let newest = store.quality_results("ev", 1).await.unwrap();
        assert_eq!(newest.len(), 1, "the limit counts runs");
        assert_eq!(newest[0].run_id, "r2");
    })
    .await;
}

#[tokio::test]
async fn lineage_facts_round_trip_in_order() {
    each_backend(|store| async move {
        let fact = |run: &str, offset_s: i64| LineageFact {
            run_id: run.into(),
            job: format!("cleanse:ev:{run}"),
            inputs: vec![LineageTable {
                table: "raw/ev".into(),
                version: Some(3),
            }],
            outputs: vec![LineageTable {
                table: "cleansed/ev".into(),
                version: Some(1),
            }],
            columns: vec![ColumnLineage {
                column: "email".into(),
                inputs: vec!["raw/ev.email".into()],
                kind: "transformation".into(),
            }],
            recorded_at: (Utc::now() + Duration::seconds(offset_s)).trunc_subsecs(6),
        };
        let (late, early) = (fact("b", 5), fact("a", 0));
        store.record_lineage(&late).await.unwrap();
        store.record_lineage(&early).await.unwrap();
        assert_eq!(store.lineage_facts().await.unwrap(), [early, late]);
    })
    .await;
}

#[tokio::test]
async fn reopening_keeps_the_catalog_and_bad_urls_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/meta.db", dir.path().display());
    connect(&url)
        .await
        .unwrap()
        .pin_schema("ev", "{}")
        .await
        .unwrap();
    // Migrations are idempotent and data survives a reopen.
    let again = connect(&url).await.unwrap();
    assert_eq!(again.latest_schema("ev").await.unwrap().unwrap().version, 1);

    let err = connect("mysql://x").await.unwrap_err().to_string();
    assert!(err.contains("unsupported metadata store URL"), "{err}");
}
