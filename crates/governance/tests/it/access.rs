//! Conformance of the access-control, audit, classification and erasure
//! records on SQLite and PostgreSQL, and the policy each principal resolves to.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use sqlx::Connection;
use tarn_common::Zone;
use tarn_governance::access::{
    ApiToken, ColumnAccess, Grant, Grantee, MaskKind, MaskRule, Principal, PrincipalKind,
    Privilege, RowFilterRule, Securable, TableAccess, token_hash,
};
use tarn_governance::{AuditEvent, AuditFilter, ColumnClassification, ErasedTable, ErasureRecord};

use crate::metadata::{each_backend, postgres_url};

fn principal(name: &str, attrs: &[(&str, &str)]) -> Principal {
    Principal {
        name: name.into(),
        kind: PrincipalKind::User,
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        created_at: Utc::now(),
    }
}

fn grant(grantee: Grantee, privilege: Privilege, securable: Securable) -> Grant {
    Grant {
        grantee,
        privilege,
        securable,
        granted_by: "admin".into(),
        granted_at: Utc::now(),
    }
}

fn table(zone: Zone, dataset: &str) -> Securable {
    Securable::Table {
        zone,
        dataset: dataset.into(),
    }
}

#[tokio::test]
async fn access_state_round_trips_and_resolves_policies() {
    each_backend(|store| async move {
        // The admin principal and role exist from the start.
        let state = store.access_state().await.unwrap();
        assert!(state.policy_for("admin").unwrap().is_admin);

        store
            .put_principal(&principal("alice", &[("region", "eu")]))
            .await
            .unwrap();
        store.put_principal(&principal("bob", &[])).await.unwrap();
        store
            .put_role("analyst", Some("reads curated"))
            .await
            .unwrap();
        assert!(store.set_role_member("analyst", "bob", true).await.unwrap());
        assert!(
            !store.set_role_member("analyst", "bob", true).await.unwrap(),
            "already a member"
        );

        let alice = Grantee::User("alice".into());
        let analyst = Grantee::Role("analyst".into());
        let zone_raw = Securable::Zone { zone: Zone::Raw };
        assert!(
            store
                .put_grant(&grant(alice.clone(), Privilege::Usage, zone_raw.clone()))
                .await
                .unwrap()
        );
        assert!(
            store
                .put_grant(&grant(
                    alice.clone(),
                    Privilege::Select,
                    table(Zone::Raw, "customers")
                ))
                .await
                .unwrap()
        );
        assert!(
            !store
                .put_grant(&grant(
                    alice.clone(),
                    Privilege::Select,
                    table(Zone::Raw, "customers")
                ))
                .await
                .unwrap(),
            "held already"
        );
        store
            .put_grant(&grant(analyst.clone(), Privilege::Usage, zone_raw.clone()))
            .await
            .unwrap();
        store
            .put_grant(&grant(
                analyst.clone(),
                Privilege::Select,
                Securable::Column {
                    zone: Zone::Raw,
                    dataset: "customers".into(),
                    column: "id".into(),
                },
            ))
            .await
            .unwrap();
        store
            .put_mask(&MaskRule {
                zone: Zone::Raw,
                dataset: "customers".into(),
                column: "email".into(),
                mask: MaskKind::Redact,
                role: None,
                except_roles: vec!["pii_reader".into()],
            })
            .await
            .unwrap();
        store
            .put_row_filter(&RowFilterRule {
                id: "rf-1".into(),
                zone: Zone::Raw,
                dataset: "customers".into(),
                predicate: "region = principal_attr('region')".into(),
                role: None,
                except_roles: vec![],
            })
            .await
            .unwrap();

        let state = store.access_state().await.unwrap();
        assert_eq!(state.principal("alice").unwrap().attributes["region"], "eu");
        assert_eq!(
            state
                .roles
                .iter()
                .find(|r| r.name == "analyst")
                .unwrap()
                .members,
            ["bob"]
        );

        let alice_policy = state.policy_for("alice").unwrap();
        assert!(!alice_policy.is_admin);
        match alice_policy.table(Zone::Raw, "customers") {
            TableAccess::Restricted {
                columns,
                masks,
                row_filters,
            } => {
                assert_eq!(columns, ColumnAccess::All);
                assert_eq!(masks.get("email"), Some(&MaskKind::Redact));
                assert_eq!(row_filters, ["region = principal_attr('region')"]);
            }
            other => panic!("alice: {other:?}"),
        }
        // Deny by default, naming the privilege.
        match alice_policy.table(Zone::Raw, "orders") {
            TableAccess::Denied(msg) => {
                assert!(msg.contains("lacks SELECT on raw/orders"), "{msg}")
            }
            other => panic!("{other:?}"),
        }
        match state
            .policy_for("bob")
            .unwrap()
            .table(Zone::Raw, "customers")
        {
            TableAccess::Restricted {
                columns: ColumnAccess::Only(cols),
                ..
            } => {
                assert_eq!(cols.into_iter().collect::<Vec<_>>(), ["id"]);
            }
            other => panic!("bob: {other:?}"),
        }
        assert!(state.policy_for("nobody").is_err());

        // Without USAGE on the zone, SELECT alone is not enough.
        assert!(
            store
                .delete_grant(&grant(alice.clone(), Privilege::Usage, zone_raw))
                .await
                .unwrap()
        );
        let state = store.access_state().await.unwrap();
        match state
            .policy_for("alice")
            .unwrap()
            .table(Zone::Raw, "customers")
        {
            TableAccess::Denied(msg) => assert!(msg.contains("USAGE on zone raw"), "{msg}"),
            other => panic!("{other:?}"),
        }

        // Removing a principal takes its grants and memberships with it.
        assert!(store.delete_role("analyst").await.unwrap());
        assert!(store.delete_principal("alice").await.unwrap());
        let state = store.access_state().await.unwrap();
        assert!(
            state
                .grants
                .iter()
                .all(|g| g.grantee != alice && g.grantee != analyst)
        );
        assert!(store.delete_row_filter("rf-1").await.unwrap());
        assert!(
            store
                .delete_mask(Zone::Raw, "customers", "email", None)
                .await
                .unwrap()
        );
        let state = store.access_state().await.unwrap();
        assert!(state.masks.is_empty() && state.row_filters.is_empty());
    })
    .await;
}

#[tokio::test]
async fn tokens_are_stored_hashed_and_revocable() {
    each_backend(|store| async move {
        store.put_principal(&principal("svc", &[])).await.unwrap();
        let secret = "tk_abc.s3cret";
        let token = ApiToken {
            id: "tk_abc".into(),
            principal: "svc".into(),
            token_hash: token_hash(secret),
            created_at: Utc::now(),
            expires_at: Utc::now() + Duration::days(1),
            revoked_at: None,
            last_used_at: None,
        };
        store.put_token(&token).await.unwrap();
        let listed = store.tokens().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_ne!(listed[0].token_hash, secret, "only the hash is stored");
        let used = store.use_token(&token_hash(secret)).await.unwrap().unwrap();
        assert_eq!(used.principal, "svc");
        assert!(store.tokens().await.unwrap()[0].last_used_at.is_some());
        assert!(
            store
                .use_token(&token_hash("tk_abc.wrong"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.revoke_token("tk_abc").await.unwrap());
        assert!(!store.revoke_token("tk_abc").await.unwrap(), "revoked once");
        assert!(
            store
                .use_token(&token_hash(secret))
                .await
                .unwrap()
                .unwrap()
                .revoked_at
                .is_some()
        );
    })
    .await;
}

#[tokio::test]
async fn audit_log_is_append_only_and_filterable() {
    each_backend(|store| async move {
        for (who, action, allowed) in [
            ("alice", "query", true),
            ("bob", "query", false),
            ("admin", "grant", true),
        ] {
            let mut e = AuditEvent::now(who, action, Some("raw.customers@v1".into()), allowed);
            e.rows = allowed.then_some(3);
            e.detail = serde_json::json!({ "statement": "SELECT 1" });
            store.append_audit(&e).await.unwrap();
        }
        let all = store.audit(&AuditFilter::default()).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].principal, "admin", "newest first");
        assert_eq!(all[2].detail["statement"], "SELECT 1");
        let bob = store
            .audit(&AuditFilter {
                principal: Some("bob".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(bob.len(), 1);
        assert!(!bob[0].allowed);
        let queries = store
            .audit(&AuditFilter {
                action: Some("query".into()),
                limit: Some(1),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(queries.len(), 1);
        let future = store
            .audit(&AuditFilter {
                since: Some(Utc::now() + Duration::hours(1)),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(future.is_empty());
    })
    .await;
}

/// The database itself refuses to change or remove audit entries.
#[tokio::test]
async fn audit_log_rejects_updates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let store = tarn_governance::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store
        .append_audit(&AuditEvent::now("alice", "query", None, true))
        .await
        .unwrap();
    drop(store);
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    for sql in ["UPDATE audit_log SET allowed = 0", "DELETE FROM audit_log"] {
        let err = sqlx::query(sql).execute(&mut conn).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }

    let db = format!("tarn_it_{}", uuid::Uuid::new_v4().simple());
    let admin_url = postgres_url();
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let url = format!("{base}/{db}");
    let store = tarn_governance::connect(&url).await.unwrap();
    store
        .append_audit(&AuditEvent::now("alice", "query", None, true))
        .await
        .unwrap();
    let mut pg = sqlx::PgConnection::connect(&url).await.unwrap();
    for sql in ["UPDATE audit_log SET allowed = 0", "DELETE FROM audit_log"] {
        let err = sqlx::query(sql).execute(&mut pg).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    drop(pg);
    drop(store);
    sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn classifications_and_erasures_are_kept() {
    each_backend(|store| async move {
        let c = ColumnClassification {
            dataset: "customers".into(),
            column: "email".into(),
            tag: "pii:email".into(),
            confidence: 0.97,
            source: "auto".into(),
            evidence: "97 of 100 sampled values are email addresses".into(),
            updated_at: Utc::now(),
        };
        store.put_classification(&c).await.unwrap();
        store
            .put_classification(&ColumnClassification {
                column: "phone".into(),
                tag: "pii:phone".into(),
                ..c.clone()
            })
            .await
            .unwrap();
        // A person's decision replaces the detection.
        store
            .put_classification(&ColumnClassification {
                tag: "none".into(),
                source: "manual".into(),
                confidence: 1.0,
                ..c.clone()
            })
            .await
            .unwrap();
        let got = store.classifications(Some("customers")).await.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (
                got[0].column.as_str(),
                got[0].tag.as_str(),
                got[0].source.as_str()
            ),
            ("email", "none", "manual")
        );
        assert!((got[1].confidence - 0.97).abs() < 1e-9);
        assert!(
            store
                .classifications(Some("other"))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.classifications(None).await.unwrap().len(), 2);

        let e = ErasureRecord {
            id: "e1".into(),
            at: Utc::now(),
            principal: "admin".into(),
            predicate: "user_id = 'u1'".into(),
            tables: vec![ErasedTable {
                table: "raw/events".into(),
                url: "file:///lake/raw/events".into(),
                rows_deleted: 4,
                version_before: 3,
                version_after: 4,
                files_vacuumed: 2,
            }],
        };
        store.record_erasure(&e).await.unwrap();
        let all = store.erasures().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].tables, e.tables);
    })
    .await;
}
