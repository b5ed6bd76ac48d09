//! Governance through the `DataLake` API: access control enforced on every
//! query path, the audit log, erasure with its time-travel horizon, lineage
//! and OpenLineage events.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use tarn::governance::AuditFilter;
use tarn::governance::access::{
    Grantee, MaskKind, MaskRule, PrincipalKind, Privilege, RowFilterRule,
};
use tarn::governance::lineage_graph::Direction;
use tarn::{DataLake, EraseScope, GrantTarget, Query, Zone};

use crate::support::{SAMPLE_CSV, TestLake, local_lake_with};

const CUSTOMERS_V1: &str = "id,name,email,region,ssn
1,Alice Smith,alice@example.com,eu,123-45-6789
2,Bob Jones,bob@example.com,us,234-56-7890
3,Carla Diaz,carla@example.com,eu,345-67-8901
";

const CUSTOMERS_V2: &str = "id,name,email,region,ssn
4,Dan Brown,dan@example.com,us,456-78-9012
5,Eve Adams,eve@example.com,eu,567-89-0123
";

async fn ingest(t: &TestLake, dataset: &str, file: &str, csv: &str) {
    let path = t.put(file, csv.to_string()).await;
    let mut spec = t.lake.spec_for(dataset);
    spec.paths = vec![path];
    t.lake.ingest_data("file", spec).await.unwrap();
}

/// Every value of column `name` as text (null as "NULL").
fn column(batches: &[RecordBatch], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let c = cast(b.column_by_name(name).unwrap(), &DataType::Utf8).unwrap();
        let c = c.as_string::<i32>();
        out.extend((0..c.len()).map(|i| {
            if c.is_null(i) {
                "NULL".to_string()
            } else {
                c.value(i).to_string()
            }
        }));
    }
    out
}

async fn rows(lake: &DataLake, sql: &str) -> Vec<RecordBatch> {
    lake.sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap()
}

async fn denied(lake: &DataLake, sql: &str) -> String {
    match lake.sql(sql).await {
        Ok(q) => panic!("{sql} ran: {:?}", q.collect().await),
        Err(e) => e.to_string(),
    }
}

/// A lake with customers (two versions), principals and policies:
/// alice (region eu) and carol (eu, role pii_reader) may read customers with
/// email redacted except for pii_reader and rows filtered to their region;
/// dave may read columns id and region; erin has no grant.
async fn governed_lake() -> TestLake {
    let t = local_lake_with("").await;
    ingest(&t, "customers", "c1.csv", CUSTOMERS_V1).await;
    ingest(&t, "customers", "c2.csv", CUSTOMERS_V2).await;
    let lake = &t.lake;
    let attrs = |r: &str| BTreeMap::from([("region".to_string(), r.to_string())]);
    for (name, region) in [
        ("alice", "eu"),
        ("carol", "eu"),
        ("dave", "us"),
        ("erin", "us"),
    ] {
        lake.add_principal(name, PrincipalKind::User, attrs(region))
            .await
            .unwrap();
    }
    lake.add_role("pii_reader", None).await.unwrap();
    lake.set_role_member("pii_reader", "carol", true)
        .await
        .unwrap();
    let table = GrantTarget::parse("raw/customers", vec![]).unwrap();
    for who in ["alice", "carol"] {
        lake.grant(Privilege::Select, &table, &Grantee::User(who.into()))
            .await
            .unwrap();
    }
    let columns = GrantTarget::parse("raw/customers", vec!["id".into(), "region".into()]).unwrap();
    lake.grant(Privilege::Select, &columns, &Grantee::User("dave".into()))
        .await
        .unwrap();
    lake.set_mask(MaskRule {
        zone: Zone::Raw,
        dataset: "customers".into(),
        column: "email".into(),
        mask: MaskKind::Redact,
        role: None,
        except_roles: vec!["pii_reader".into()],
    })
    .await
    .unwrap();
    lake.set_mask(MaskRule {
        zone: Zone::Raw,
        dataset: "customers".into(),
        column: "ssn".into(),
        mask: MaskKind::Partial(4),
        role: None,
        except_roles: vec![],
    })
    .await
    .unwrap();
    lake.add_row_filter(RowFilterRule {
        id: String::new(),
        zone: Zone::Raw,
        dataset: "customers".into(),
        predicate: "region = principal_attr('region')".into(),
        role: None,
        except_roles: vec![],
    })
    .await
    .unwrap();
    t
}

#[tokio::test]
async fn masks_and_row_filters_hold_on_every_query_path() {
    let t = governed_lake().await;
    let alice = t.lake.as_principal("alice").await.unwrap();
    let real = [
        "alice@example.com",
        "bob@example.com",
        "carla@example.com",
        "dan@example.com",
        "eve@example.com",
    ];
    let leaks = |values: &[String]| values.iter().any(|v| real.iter().any(|r| v.contains(r)));

    let all = rows(&alice, "SELECT * FROM raw.customers ORDER BY id").await;
    assert_eq!(column(&all, "id"), ["1", "3", "5"], "only eu rows");
    assert_eq!(column(&all, "email"), ["***", "***", "***"]);
    assert_eq!(
        column(&all, "ssn"),
        ["*******6789", "*******8901", "*******0123"]
    );

    // Filters written against the masked column see the mask, not the value.
    let probe = rows(
        &alice,
        "SELECT id FROM raw.customers WHERE email = 'bob@example.com' OR email LIKE 'alice%'",
    )
    .await;
    assert!(column(&probe, "id").is_empty());
    for sql in [
        "SELECT a.id, b.email FROM raw.customers a JOIN raw.customers b ON a.id = b.id",
        "SELECT id, email FROM raw.customers WHERE id IN (SELECT id FROM raw.customers WHERE region = 'us')",
        "WITH c AS (SELECT * FROM raw.customers) SELECT id, email FROM c",
        "SELECT id, email FROM raw.customers UNION ALL SELECT id, email FROM raw.\"customers@v1\"",
        "SELECT region AS id, max(email) AS email FROM raw.customers GROUP BY region",
        "SELECT CAST(count(*) AS VARCHAR) AS id, CAST(count(DISTINCT email) AS VARCHAR) AS email FROM raw.customers",
    ] {
        let got = rows(&alice, sql).await;
        let emails = column(&got, "email");
        assert!(!leaks(&emails), "{sql}: {emails:?}");
        let ids = column(&got, "id");
        assert!(
            !ids.iter().any(|i| i == "2" || i == "4" || i == "us"),
            "{sql}: us rows {ids:?}"
        );
    }
    let counted = rows(
        &alice,
        "SELECT count(*) AS n, count(DISTINCT email) AS d FROM raw.customers",
    )
    .await;
    assert_eq!(
        (column(&counted, "n"), column(&counted, "d")),
        (vec!["3".to_string()], vec!["1".to_string()])
    );

    // A predicate that fails on some value never runs on hidden rows or
    // real values, so its error cannot tell they exist.
    let probe = rows(
        &alice,
        "SELECT id FROM raw.customers WHERE 1 / (id - 2) = 0",
    )
    .await;
    assert_eq!(
        column(&probe, "id"),
        ["5"],
        "id 2 is a us row: never evaluated"
    );
    let probe = rows(
        &alice,
        "SELECT id FROM raw.customers \
         WHERE CASE WHEN email = 'bob@example.com' THEN 1 / (id - id) ELSE 1 END = 1 ORDER BY id",
    )
    .await;
    assert_eq!(column(&probe, "id"), ["1", "3", "5"]);

    // Predicates that cannot fail still go below the barrier (and prune);
    // the rest stay above it.
    let explain = rows(
        &alice,
        "EXPLAIN SELECT id FROM raw.customers WHERE id > 1 AND 1 / (id - 2) = 0",
    )
    .await;
    let plan = column(&explain, "plan")[0].clone();
    let (above, below) = plan.split_once("SecurityBarrier").expect("a barrier");
    assert!(
        above.contains("Int64(1) / ") && !below.contains("Int64(1) / "),
        "{plan}"
    );
    assert!(below.contains("id > Int64(1)"), "{plan}");

    // Nothing counts the hidden rows: EXPLAIN ANALYZE is for admins, and
    // the explanation leaves out the table's statistics.
    let msg = denied(&alice, "EXPLAIN ANALYZE SELECT id FROM raw.customers").await;
    assert!(msg.contains("EXPLAIN ANALYZE"), "{msg}");
    let plan = alice
        .query_engine()
        .plan_sql("SELECT id FROM raw.customers")
        .await
        .unwrap();
    let explanation = alice.query_engine().explain(&plan).await.unwrap();
    assert!(!explanation.to_string().contains("rows 5"), "{explanation}");

    // Time travel reads the old version through the same policy.
    let v1 = rows(
        &alice,
        "SELECT id, email FROM raw.\"customers@v1\" ORDER BY id",
    )
    .await;
    assert_eq!(column(&v1, "id"), ["1", "3"]);
    assert_eq!(column(&v1, "email"), ["***", "***"]);

    // Structured queries too.
    let q = Query {
        select: vec!["id".into(), "email".into()],
        ..Query::from("raw/customers")
    };
    let structured = alice.query_data(&q).await.unwrap().collect().await.unwrap();
    assert_eq!(column(&structured, "email").len(), 3);
    assert!(!leaks(&column(&structured, "email")));

    // EXPLAIN runs, and shows the rewritten plan: the mask and the filter.
    let explain = rows(&alice, "EXPLAIN SELECT email FROM raw.customers").await;
    let plan = column(&explain, "plan").join("\n");
    assert!(
        plan.contains("tarn_mask(") && plan.contains("Filter: tarn.raw.customers.region = "),
        "{plan}"
    );

    // The cache keeps principals apart: carol (pii_reader) sees the values.
    let carol = t.lake.as_principal("carol").await.unwrap();
    let sql = "SELECT id, email FROM raw.customers ORDER BY id";
    let first = rows(&alice, sql).await;
    let again = alice.sql(sql).await.unwrap();
    assert_eq!(again.cache, tarn::CacheStatus::Hit);
    assert_eq!(
        column(&again.collect().await.unwrap(), "email"),
        column(&first, "email")
    );
    let clear = rows(&carol, sql).await;
    assert_eq!(
        column(&clear, "email"),
        ["alice@example.com", "carla@example.com", "eve@example.com"]
    );
    assert_eq!(
        column(&rows(&alice, sql).await, "email"),
        ["***", "***", "***"]
    );

    // An admin sees everything.
    assert_eq!(column(&rows(&t.lake, sql).await, "id").len(), 5);
}

#[tokio::test]
async fn denials_are_errors_that_name_the_privilege() {
    let t = governed_lake().await;
    let erin = t.lake.as_principal("erin").await.unwrap();
    let msg = denied(&erin, "SELECT count(*) FROM raw.customers").await;
    assert!(
        msg.contains("permission denied") && msg.contains("lacks SELECT on raw/customers"),
        "{msg}"
    );
    let q = Query::from("raw/customers");
    let msg = erin.query_data(&q).await.unwrap_err().to_string();
    assert!(msg.contains("lacks SELECT on raw/customers"), "{msg}");
    assert!(
        denied(&erin, "SELECT * FROM system.runs")
            .await
            .contains("admin role")
    );

    // Column grants: what is granted works, anything else names the column.
    let dave = t.lake.as_principal("dave").await.unwrap();
    let ok = rows(&dave, "SELECT id, region FROM raw.customers ORDER BY id").await;
    assert_eq!(column(&ok, "id"), ["2", "4"], "dave's region is us");
    assert_eq!(
        column(
            &rows(&dave, "SELECT count(*) AS n FROM raw.customers").await,
            "n"
        ),
        ["2"]
    );
    for sql in [
        "SELECT * FROM raw.customers",
        "SELECT id FROM raw.customers WHERE email LIKE '%a%'",
        "SELECT count(DISTINCT ssn) FROM raw.customers",
        "EXPLAIN SELECT email FROM raw.customers",
        "SELECT id FROM raw.customers ORDER BY name",
    ] {
        let msg = denied(&dave, sql).await;
        assert!(
            msg.contains("permission denied")
                && msg.contains("lacks SELECT on column raw/customers."),
            "{sql}: {msg}"
        );
    }

    // A row filter needing an attribute the principal lacks refuses to run.
    t.lake
        .add_principal("nobody", PrincipalKind::Service, BTreeMap::new())
        .await
        .unwrap();
    let target = GrantTarget::parse("raw/customers", vec![]).unwrap();
    t.lake
        .grant(Privilege::Select, &target, &Grantee::User("nobody".into()))
        .await
        .unwrap();
    let nobody = t.lake.as_principal("nobody").await.unwrap();
    assert!(
        denied(&nobody, "SELECT id FROM raw.customers")
            .await
            .contains("attribute `region`")
    );

    // A row filter that does not plan against its table is refused when added.
    let bad = t
        .lake
        .add_row_filter(RowFilterRule {
            id: String::new(),
            zone: Zone::Raw,
            dataset: "customers".into(),
            predicate: "no_such_column = principal_attr('region')".into(),
            role: None,
            except_roles: vec![],
        })
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("row filter"), "{bad}");

    // Only admins manage access; every denial is audited.
    let err = erin
        .grant(Privilege::Select, &target, &Grantee::User("erin".into()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    let denials = t
        .lake
        .audit_log(&AuditFilter {
            principal: Some("erin".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        denials.len() >= 4 && denials.iter().all(|e| !e.allowed),
        "{denials:?}"
    );
    assert!(t.lake.as_principal("ghost").await.is_err());
}

#[tokio::test]
async fn queries_are_audited_with_tables_columns_and_rows() {
    let t = governed_lake().await;
    let alice = t.lake.as_principal("alice").await.unwrap();
    rows(&alice, "SELECT id, email FROM raw.customers").await;
    let events = t
        .lake
        .audit_log(&AuditFilter {
            principal: Some("alice".into()),
            action: Some("query".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let e = &events[0];
    assert!(e.allowed);
    assert_eq!(e.rows, Some(3));
    assert_eq!(e.detail["statement"], "SELECT id, email FROM raw.customers");
    assert_eq!(e.detail["tables"][0], "raw.customers@v2");
    let columns: Vec<&str> = e.detail["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(
        columns.contains(&"raw/customers.email") && columns.contains(&"raw/customers.region"),
        "{columns:?}"
    );
    let audit = rows(
        &t.lake,
        "SELECT action, allowed FROM system.audit WHERE principal = 'admin' AND action = 'grant'",
    )
    .await;
    assert_eq!(column(&audit, "action").len(), 3, "three grants by admin");
}

#[tokio::test]
async fn tokens_authenticate_until_revoked_or_expired() {
    let t = governed_lake().await;
    let token = t
        .lake
        .create_token("alice", chrono::Duration::hours(1))
        .await
        .unwrap();
    let as_alice = t.lake.authenticate(&token.token).await.unwrap();
    assert_eq!(as_alice.principal().name, "alice");
    assert!(
        t.lake
            .authenticate(&format!("{}x", token.token))
            .await
            .is_err()
    );
    t.lake.revoke_token(&token.id).await.unwrap();
    assert!(
        t.lake
            .authenticate(&token.token)
            .await
            .unwrap_err()
            .to_string()
            .contains("revoked")
    );
    let expired = t
        .lake
        .create_token("alice", chrono::Duration::seconds(-1))
        .await
        .unwrap();
    assert!(
        t.lake
            .authenticate(&expired.token)
            .await
            .unwrap_err()
            .to_string()
            .contains("expired")
    );
    let uses = t
        .lake
        .audit_log(&AuditFilter {
            action: Some("token_use".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(uses.iter().filter(|e| e.allowed).count(), 1);
    assert_eq!(uses.iter().filter(|e| !e.allowed).count(), 3);
}

#[tokio::test]
async fn erasure_deletes_everywhere_and_closes_older_versions() {
    let t = local_lake_with("").await;
    ingest(&t, "events", "e1.csv", SAMPLE_CSV).await;
    let lake = &t.lake;
    let subject = "SELECT count(*) AS n FROM raw.events WHERE user_id = 1001";
    let before: i64 = column(&rows(lake, subject).await, "n")[0].parse().unwrap();
    assert!(before > 0);
    let total: i64 = column(
        &rows(lake, "SELECT count(*) AS n FROM raw.events").await,
        "n",
    )[0]
    .parse()
    .unwrap();

    let scope = EraseScope::Datasets(vec!["events".into()]);
    let (dry, none) = lake
        .erase("user_id = 1001", &scope, true, true)
        .await
        .unwrap();
    assert!(none.is_none() && dry.tables.iter().any(|t| t.rows_deleted == before));
    assert_eq!(
        column(&rows(lake, subject).await, "n"),
        [before.to_string()],
        "dry run"
    );

    let (report, record) = lake
        .erase("user_id = 1001", &scope, true, false)
        .await
        .unwrap();
    let record = record.unwrap();
    let raw = report
        .tables
        .iter()
        .find(|t| t.table == "raw/events")
        .unwrap();
    assert_eq!(raw.rows_deleted, before);
    assert!(raw.files_vacuumed >= 1);
    assert_eq!(column(&rows(lake, subject).await, "n"), ["0"]);
    let left: i64 = column(
        &rows(lake, "SELECT count(*) AS n FROM raw.events").await,
        "n",
    )[0]
    .parse()
    .unwrap();
    assert_eq!(left, total - before);

    // Older versions are refused, here and in a new process.
    let old = format!(
        "SELECT count(*) FROM raw.\"events@v{}\"",
        raw.version_before
    );
    assert!(denied(lake, &old).await.contains("erasure"));
    let reopened = DataLake::open(lake.config().clone()).await.unwrap();
    assert!(denied(&reopened, &old).await.contains("erasure"));
    assert_eq!(lake.metadata().erasures().await.unwrap()[0].id, record.id);
    let audit = lake
        .audit_log(&AuditFilter {
            action: Some("erase".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        audit[0].rows,
        Some(report.tables.iter().map(|t| t.rows_deleted).sum())
    );
}

#[tokio::test]
async fn lineage_and_openlineage_events_cover_ingest() {
    let mut t = local_lake_with("").await;
    let mut config = t.lake.config().clone();
    config.governance.openlineage.file = Some("events.jsonl".into());
    t.lake = DataLake::open(config).await.unwrap();
    ingest(&t, "events", "e1.csv", SAMPLE_CSV).await;
    let graph = t
        .lake
        .lineage("raw/events", Direction::Upstream, None)
        .await
        .unwrap();
    let source = graph
        .nodes
        .iter()
        .find(|n| n.kind == "source")
        .expect("file source node");
    assert!(source.id.ends_with("e1.csv"), "{source:?}");
    assert_eq!(graph.edges[0].job, "ingest:events");
    assert!(
        t.lake
            .lineage("raw/nothing", Direction::Both, None)
            .await
            .is_err()
    );

    let path = t.lake.config().resolve_path("events.jsonl");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["START", "COMPLETE"]);
    assert_eq!(lines[1]["job"]["name"], "ingest:events");
    assert_eq!(lines[1]["outputs"][0]["name"], "raw/events");
    assert!(
        lines[1]["outputs"][0]["facets"]["schema"]["fields"]
            .as_array()
            .unwrap()
            .len()
            > 3
    );
}
