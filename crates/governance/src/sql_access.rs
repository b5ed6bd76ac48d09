//! The SQL behind access control, the audit log, classifications and
//! erasure evidence (tables of migration 0004), for [`crate::SqlMetadataStore`].

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::access::{AccessState, ApiToken, Grant, MaskRule, Principal, Role, RowFilterRule};
use crate::error::{Context, Error, Result};
use crate::model::{AuditEvent, AuditFilter, ColumnClassification, ErasureRecord};
use crate::sql_store::{parse_ts, ts};

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt(format!("{what}: {e}")))
}

fn parse<T: std::str::FromStr<Err = String>>(text: &str) -> Result<T> {
    text.parse().map_err(Error::Corrupt)
}

/// The triggers that make the audit log append-only, per backend.
pub(crate) async fn protect_audit_log(pool: &AnyPool, postgres: bool) -> Result<()> {
    let statements: &[&str] = if postgres {
        &[
            "CREATE OR REPLACE FUNCTION tarn_audit_append_only() RETURNS trigger AS $$ \
             BEGIN RAISE EXCEPTION 'the audit log is append-only'; END; $$ LANGUAGE plpgsql",
            "DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log",
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION tarn_audit_append_only()",
        ]
    } else {
        &[
            "CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
            "CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
        ]
    };
    for s in statements {
        sqlx::query(s)
            .execute(pool)
            .await
            .context("protect the audit log")?;
    }
    Ok(())
}

pub(crate) async fn put_principal(pool: &AnyPool, p: &Principal) -> Result<()> {
    sqlx::query(
        "INSERT INTO principals (name, kind, attributes, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, attributes = excluded.attributes",
    )
    .bind(&p.name)
    .bind(p.kind.as_str())
    .bind(json(&p.attributes))
    .bind(ts(&p.created_at))
    .execute(pool)
    .await
    .context("store principal")?;
    Ok(())
}

/// Removes a principal with its role memberships, grants and tokens.
pub(crate) async fn delete_principal(pool: &AnyPool, name: &str) -> Result<bool> {
    let mut tx = pool.begin().await.context("remove principal")?;
    let n = sqlx::query("DELETE FROM principals WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await
        .context("remove principal")?
        .rows_affected();
    for sql in [
        "DELETE FROM role_members WHERE principal = $1",
        "DELETE FROM grants WHERE grantee = 'user:' || $1",
        "DELETE FROM api_tokens WHERE principal = $1",
    ] {
        sqlx::query(sql)
            .bind(name)
            .execute(&mut *tx)
            .await
            .context("remove principal")?;
    }
    tx.commit().await.context("remove principal")?;
    Ok(n > 0)
}

pub(crate) async fn put_role(pool: &AnyPool, name: &str, description: Option<&str>) -> Result<()> {
    sqlx::query(
        "INSERT INTO roles (name, description, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET \
         description = COALESCE(excluded.description, roles.description)",
    )
    .bind(name)
    .bind(description)
    .bind(ts(&chrono::Utc::now()))
    .execute(pool)
    .await
    .context("store role")?;
    Ok(())
}

pub(crate) async fn delete_role(pool: &AnyPool, name: &str) -> Result<bool> {
    let mut tx = pool.begin().await.context("remove role")?;
    let n = sqlx::query("DELETE FROM roles WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await
        .context("remove role")?
        .rows_affected();
    for sql in [
        "DELETE FROM role_members WHERE role = $1",
        "DELETE FROM grants WHERE grantee = 'role:' || $1",
    ] {
        sqlx::query(sql)
            .bind(name)
            .execute(&mut *tx)
            .await
            .context("remove role")?;
    }
    tx.commit().await.context("remove role")?;
    Ok(n > 0)
}

pub(crate) async fn set_role_member(
    pool: &AnyPool,
    role: &str,
    principal: &str,
    member: bool,
) -> Result<bool> {
    let sql = if member {
        "INSERT INTO role_members (role, principal) VALUES ($1, $2) ON CONFLICT DO NOTHING"
    } else {
        "DELETE FROM role_members WHERE role = $1 AND principal = $2"
    };
    let n = sqlx::query(sql)
        .bind(role)
        .bind(principal)
        .execute(pool)
        .await
        .context("change role membership")?
        .rows_affected();
    Ok(n > 0)
}

pub(crate) async fn put_grant(pool: &AnyPool, g: &Grant) -> Result<bool> {
    let n = sqlx::query(
        "INSERT INTO grants (grantee, privilege, securable, granted_by, granted_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(g.grantee.to_string())
    .bind(g.privilege.as_str())
    .bind(g.securable.to_string())
    .bind(&g.granted_by)
    .bind(ts(&g.granted_at))
    .execute(pool)
    .await
    .context("store grant")?
    .rows_affected();
    Ok(n > 0)
}

pub(crate) async fn delete_grant(pool: &AnyPool, g: &Grant) -> Result<bool> {
    let n =
        sqlx::query("DELETE FROM grants WHERE grantee = $1 AND privilege = $2 AND securable = $3")
            .bind(g.grantee.to_string())
            .bind(g.privilege.as_str())
            .bind(g.securable.to_string())
            .execute(pool)
            .await
            .context("remove grant")?
            .rows_affected();
    Ok(n > 0)
}

pub(crate) async fn put_mask(pool: &AnyPool, m: &MaskRule) -> Result<()> {
    sqlx::query(
        "INSERT INTO column_masks (zone, dataset, column_name, role, mask, except_roles, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (zone, dataset, column_name, role) DO UPDATE SET mask = excluded.mask, \
         except_roles = excluded.except_roles",
    )
    .bind(m.zone.as_str())
    .bind(&m.dataset)
    .bind(&m.column)
    .bind(m.role.clone().unwrap_or_default())
    .bind(m.mask.to_string())
    .bind(json(&m.except_roles))
    .bind(ts(&chrono::Utc::now()))
    .execute(pool)
    .await
    .context("store mask")?;
    Ok(())
}

pub(crate) async fn delete_mask(
    pool: &AnyPool,
    zone: &str,
    dataset: &str,
    column: &str,
    role: Option<&str>,
) -> Result<bool> {
    let n = sqlx::query(
        "DELETE FROM column_masks WHERE zone = $1 AND dataset = $2 AND column_name = $3 \
         AND role = $4",
    )
    .bind(zone)
    .bind(dataset)
    .bind(column)
    .bind(role.unwrap_or_default())
    .execute(pool)
    .await
    .context("remove mask")?
    .rows_affected();
    Ok(n > 0)
}

pub(crate) async fn put_row_filter(pool: &AnyPool, f: &RowFilterRule) -> Result<()> {
    sqlx::query(
        "INSERT INTO row_filters (id, zone, dataset, predicate, role, except_roles, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET \
         predicate = excluded.predicate, role = excluded.role, \
         except_roles = excluded.except_roles",
    )
    .bind(&f.id)
    .bind(f.zone.as_str())
    .bind(&f.dataset)
    .bind(&f.predicate)
    .bind(f.role.clone().unwrap_or_default())
    .bind(json(&f.except_roles))
    .bind(ts(&chrono::Utc::now()))
    .execute(pool)
    .await
    .context("store row filter")?;
    Ok(())
}

pub(crate) async fn delete_row_filter(pool: &AnyPool, id: &str) -> Result<bool> {
    let n = sqlx::query("DELETE FROM row_filters WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .context("remove row filter")?
        .rows_affected();
    Ok(n > 0)
}

fn opt_role(role: String) -> Option<String> {
    Some(role).filter(|r| !r.is_empty())
}

pub(crate) async fn access_state(pool: &AnyPool) -> Result<AccessState> {
    let ctx = "read access control";
    let principals = sqlx::query("SELECT * FROM principals ORDER BY name")
        .fetch_all(pool)
        .await
        .context(ctx)?
        .iter()
        .map(|r| {
            Ok(Principal {
                name: r.try_get("name").context(ctx)?,
                kind: parse(&r.try_get::<String, _>("kind").context(ctx)?)?,
                attributes: from_json(
                    "principal attributes",
                    &r.try_get::<String, _>("attributes").context(ctx)?,
                )?,
                created_at: parse_ts(&r.try_get::<String, _>("created_at").context(ctx)?)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in sqlx::query("SELECT role, principal FROM role_members ORDER BY role, principal")
        .fetch_all(pool)
        .await
        .context(ctx)?
    {
        members
            .entry(r.try_get("role").context(ctx)?)
            .or_default()
            .push(r.try_get("principal").context(ctx)?);
    }
    let roles = sqlx::query("SELECT name, description FROM roles ORDER BY name")
        .fetch_all(pool)
        .await
        .context(ctx)?
        .iter()
        .map(|r| {
            let name: String = r.try_get("name").context(ctx)?;
            Ok(Role {
                members: members.remove(&name).unwrap_or_default(),
                description: r.try_get("description").context(ctx)?,
                name,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let grants = sqlx::query("SELECT * FROM grants ORDER BY grantee, securable, privilege")
        .fetch_all(pool)
        .await
        .context(ctx)?
        .iter()
        .map(|r| {
            Ok(Grant {
                grantee: parse(&r.try_get::<String, _>("grantee").context(ctx)?)?,
                privilege: parse(&r.try_get::<String, _>("privilege").context(ctx)?)?,
                securable: parse(&r.try_get::<String, _>("securable").context(ctx)?)?,
                granted_by: r.try_get("granted_by").context(ctx)?,
                granted_at: parse_ts(&r.try_get::<String, _>("granted_at").context(ctx)?)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let zone = |r: &AnyRow| -> Result<tarn_common::Zone> {
        r.try_get::<String, _>("zone")
            .context(ctx)?
            .parse()
            .map_err(|e| Error::Corrupt(format!("{e}")))
    };
    let masks = sqlx::query("SELECT * FROM column_masks ORDER BY zone, dataset, column_name, role")
        .fetch_all(pool)
        .await
        .context(ctx)?
        .iter()
        .map(|r| {
            Ok(MaskRule {
                zone: zone(r)?,
                dataset: r.try_get("dataset").context(ctx)?,
                column: r.try_get("column_name").context(ctx)?,
                mask: parse(&r.try_get::<String, _>("mask").context(ctx)?)?,
                role: opt_role(r.try_get("role").context(ctx)?),
                except_roles: from_json(
                    "mask except_roles",
                    &r.try_get::<String, _>("except_roles").context(ctx)?,
                )?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let row_filters = sqlx::query("SELECT * FROM row_filters ORDER BY zone, dataset, id")
        .fetch_all(pool)
        .await
        .context(ctx)?
        .iter()
        .map(|r| {
            Ok(RowFilterRule {
                id: r.try_get("id").context(ctx)?,
                zone: zone(r)?,
                dataset: r.try_get("dataset").context(ctx)?,
                predicate: r.try_get("predicate").context(ctx)?,
                role: opt_role(r.try_get("role").context(ctx)?),
                except_roles: from_json(
                    "row filter except_roles",
                    &r.try_get::<String, _>("except_roles").context(ctx)?,
                )?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(AccessState {
        principals,
        roles,
        grants,
        masks,
        row_filters,
    })
}

fn token_from_row(r: &AnyRow) -> Result<ApiToken> {
    let ctx = "read token";
    let opt = |name: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        r.try_get::<Option<String>, _>(name)
            .context(ctx)?
            .as_deref()
            .map(parse_ts)
            .transpose()
    };
    Ok(ApiToken {
        id: r.try_get("id").context(ctx)?,
        principal: r.try_get("principal").context(ctx)?,
        token_hash: r.try_get("token_hash").context(ctx)?,
        created_at: parse_ts(&r.try_get::<String, _>("created_at").context(ctx)?)?,
        expires_at: parse_ts(&r.try_get::<String, _>("expires_at").context(ctx)?)?,
        revoked_at: opt("revoked_at")?,
        last_used_at: opt("last_used_at")?,
    })
}

pub(crate) async fn put_token(pool: &AnyPool, t: &ApiToken) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_tokens (id, principal, token_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&t.id)
    .bind(&t.principal)
    .bind(&t.token_hash)
    .bind(ts(&t.created_at))
    .bind(ts(&t.expires_at))
    .execute(pool)
    .await
    .context("store token")?;
    Ok(())
}

pub(crate) async fn tokens(pool: &AnyPool) -> Result<Vec<ApiToken>> {
    sqlx::query("SELECT * FROM api_tokens ORDER BY created_at, id")
        .fetch_all(pool)
        .await
        .context("list tokens")?
        .iter()
        .map(token_from_row)
        .collect()
}

/// The token with this hash, marking it used.
pub(crate) async fn use_token(pool: &AnyPool, hash: &str) -> Result<Option<ApiToken>> {
    let Some(row) = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = $1")
        .bind(hash)
        .fetch_optional(pool)
        .await
        .context("read token")?
    else {
        return Ok(None);
    };
    let token = token_from_row(&row)?;
    sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
        .bind(ts(&chrono::Utc::now()))
        .bind(&token.id)
        .execute(pool)
        .await
        .context("mark token used")?;
    Ok(Some(token))
}

pub(crate) async fn revoke_token(pool: &AnyPool, id: &str) -> Result<bool> {
    let n =
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(ts(&chrono::Utc::now()))
            .bind(id)
            .execute(pool)
            .await
            .context("revoke token")?
            .rows_affected();
    Ok(n > 0)
}

pub(crate) async fn append_audit(pool: &AnyPool, e: &AuditEvent) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, at, principal, action, target, allowed, rows, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&e.id)
    .bind(ts(&e.at))
    .bind(&e.principal)
    .bind(&e.action)
    .bind(&e.target)
    .bind(i64::from(e.allowed))
    .bind(e.rows)
    .bind(json(&e.detail))
    .execute(pool)
    .await
    .context("append to the audit log")?;
    Ok(())
}

pub(crate) async fn audit(pool: &AnyPool, f: &AuditFilter) -> Result<Vec<AuditEvent>> {
    let ctx = "read the audit log";
    let rows = sqlx::query(
        "SELECT * FROM audit_log WHERE ($1 IS NULL OR principal = $1) \
         AND ($2 IS NULL OR action = $2) AND ($3 IS NULL OR at >= $3) \
         ORDER BY at DESC, id DESC LIMIT $4",
    )
    .bind(&f.principal)
    .bind(&f.action)
    .bind(f.since.as_ref().map(ts))
    .bind(
        f.limit
            .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX)),
    )
    .fetch_all(pool)
    .await
    .context(ctx)?;
    rows.iter()
        .map(|r| {
            Ok(AuditEvent {
                id: r.try_get("id").context(ctx)?,
                at: parse_ts(&r.try_get::<String, _>("at").context(ctx)?)?,
                principal: r.try_get("principal").context(ctx)?,
                action: r.try_get("action").context(ctx)?,
                target: r.try_get("target").context(ctx)?,
                allowed: r.try_get::<i64, _>("allowed").context(ctx)? != 0,
                rows: r.try_get("rows").context(ctx)?,
                detail: from_json(
                    "audit detail",
                    &r.try_get::<String, _>("detail").context(ctx)?,
                )?,
            })
        })
        .collect()
}

pub(crate) async fn put_classification(pool: &AnyPool, c: &ColumnClassification) -> Result<()> {
    sqlx::query(
        "INSERT INTO column_classifications (dataset, column_name, tag, confidence, source, \
         evidence, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (dataset, column_name) DO UPDATE SET tag = excluded.tag, \
         confidence = excluded.confidence, source = excluded.source, \
         evidence = excluded.evidence, updated_at = excluded.updated_at",
    )
    .bind(&c.dataset)
    .bind(&c.column)
    .bind(&c.tag)
    .bind(c.confidence)
    .bind(&c.source)
    .bind(&c.evidence)
    .bind(ts(&c.updated_at))
    .execute(pool)
    .await
    .context("store classification")?;
    Ok(())
}

pub(crate) async fn classifications(
    pool: &AnyPool,
    dataset: Option<&str>,
) -> Result<Vec<ColumnClassification>> {
    let ctx = "read classifications";
    sqlx::query(
        "SELECT * FROM column_classifications WHERE ($1 IS NULL OR dataset = $1) \
         ORDER BY dataset, column_name",
    )
    .bind(dataset)
    .fetch_all(pool)
    .await
    .context(ctx)?
    .iter()
    .map(|r| {
        Ok(ColumnClassification {
            dataset: r.try_get("dataset").context(ctx)?,
            column: r.try_get("column_name").context(ctx)?,
            tag: r.try_get("tag").context(ctx)?,
            confidence: r.try_get("confidence").context(ctx)?,
            source: r.try_get("source").context(ctx)?,
            evidence: r.try_get("evidence").context(ctx)?,
            updated_at: parse_ts(&r.try_get::<String, _>("updated_at").context(ctx)?)?,
        })
    })
    .collect()
}

pub(crate) async fn record_erasure(pool: &AnyPool, e: &ErasureRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO erasures (id, at, principal, predicate, tables) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&e.id)
    .bind(ts(&e.at))
    .bind(&e.principal)
    .bind(&e.predicate)
    .bind(json(&e.tables))
    .execute(pool)
    .await
    .context("store erasure evidence")?;
    Ok(())
}

pub(crate) async fn erasures(pool: &AnyPool) -> Result<Vec<ErasureRecord>> {
    let ctx = "read erasures";
    sqlx::query("SELECT * FROM erasures ORDER BY at, id")
        .fetch_all(pool)
        .await
        .context(ctx)?
        .iter()
        .map(|r| {
            Ok(ErasureRecord {
                id: r.try_get("id").context(ctx)?,
                at: parse_ts(&r.try_get::<String, _>("at").context(ctx)?)?,
                principal: r.try_get("principal").context(ctx)?,
                predicate: r.try_get("predicate").context(ctx)?,
                tables: from_json(
                    "erasure tables",
                    &r.try_get::<String, _>("tables").context(ctx)?,
                )?,
            })
        })
        .collect()
}
