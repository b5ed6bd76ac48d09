//! The AccessManager as the lake offers it: acting as a principal, managing
//! principals, roles, grants, masks, row filters and tokens, and the audit
//! log. Every change is audited; only admins (or holders of ADMIN on the
//! table concerned) may make one.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, Utc};
use tarn_common::Zone;
use tarn_governance::access::{
    ApiToken, Grant, Grantee, MaskKind, MaskRule, Principal, PrincipalKind, PrincipalPolicy,
    Privilege, RowFilterRule, Securable, token_hash,
};
use tarn_governance::{AuditEvent, AuditFilter};

use crate::DataLake;
use crate::error::{Error, Result};

/// What `tarn grant` / `tarn revoke` act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantTarget {
    /// `raw` (USAGE).
    Zone(Zone),
    /// `raw/customers` or `raw/*`, optionally only some columns.
    Table {
        /// The zone.
        zone: Zone,
        /// The dataset, or `*`.
        dataset: String,
        /// Only these columns (SELECT only); empty: the whole table.
        columns: Vec<String>,
    },
}

impl std::fmt::Display for GrantTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Zone(z) => write!(f, "zone {z}"),
            Self::Table {
                zone,
                dataset,
                columns,
            } if columns.is_empty() => write!(f, "{zone}/{dataset}"),
            Self::Table {
                zone,
                dataset,
                columns,
            } => write!(f, "{zone}/{dataset} ({})", columns.join(", ")),
        }
    }
}

/// Parses `zone/dataset` (or `zone.dataset`).
pub fn parse_table(text: &str) -> Result<(Zone, String)> {
    let (zone, name) = text.split_once(['/', '.']).ok_or_else(|| {
        Error::Invalid(format!(
            "`{text}`: give a table as ZONE/DATASET, e.g. raw/customers"
        ))
    })?;
    let zone: Zone = zone.parse()?;
    if name.is_empty() || name.contains('/') {
        return Err(Error::Invalid(format!(
            "`{text}`: give a table as ZONE/DATASET"
        )));
    }
    Ok((zone, name.to_string()))
}

impl GrantTarget {
    /// `raw` → a zone; `raw/customers` → a table (with `columns`).
    pub fn parse(text: &str, columns: Vec<String>) -> Result<Self> {
        if !text.contains(['/', '.']) {
            if !columns.is_empty() {
                return Err(Error::Invalid("--columns needs a table, not a zone".into()));
            }
            return Ok(Self::Zone(text.parse()?));
        }
        let (zone, dataset) = parse_table(text)?;
        Ok(Self::Table {
            zone,
            dataset,
            columns,
        })
    }
}

/// A token as `tarn token create` returns it: the secret is shown once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CreatedToken {
    /// The token's id (to revoke it).
    pub id: String,
    /// The secret to present (`Authorization: Bearer …`, `TARN_TOKEN`).
    pub token: String,
    /// Whose it is.
    pub principal: String,
    /// When it expires.
    pub expires_at: chrono::DateTime<Utc>,
}

impl DataLake {
    /// The principal acting.
    pub fn principal(&self) -> &PrincipalPolicy {
        &self.principal
    }

    /// This lake acting as `name`: its queries are restricted by the
    /// principal's grants, masks and row filters, and audited under its name.
    pub async fn as_principal(&self, name: &str) -> Result<DataLake> {
        let state = self.metadata.access_state().await?;
        let policy = state.policy_for(name).map_err(Error::Invalid)?;
        let policy = policy.with_default_masks(self.classified_masks().await?);
        let salt = self.config.masking_salt().unwrap_or_default();
        Ok(DataLake {
            query: self.query.with_policy(policy.clone(), &salt),
            principal: Arc::new(policy),
            ..self.clone()
        })
    }

    /// This lake acting as the owner of API token `token`, if the token is
    /// known, not revoked and not expired. Every use is audited.
    pub async fn authenticate(&self, token: &str) -> Result<DataLake> {
        let found = self.metadata.use_token(&token_hash(token)).await?;
        let id = token.split('.').next().unwrap_or_default().to_string();
        let refuse = |why: &str| Error::Invalid(format!("token {id}: {why}"));
        let outcome = match &found {
            None => Err(refuse("unknown token")),
            Some(t) if t.revoked_at.is_some() => Err(refuse("revoked")),
            Some(t) if t.expires_at <= Utc::now() => {
                Err(refuse(&format!("expired at {}", t.expires_at)))
            }
            Some(t) => Ok(t.principal.clone()),
        };
        let who = found.as_ref().map_or("unknown", |t| t.principal.as_str());
        self.audit(AuditEvent {
            detail: match &outcome {
                Ok(_) => serde_json::json!({ "token": id }),
                Err(e) => serde_json::json!({ "token": id, "reason": e.to_string() }),
            },
            ..AuditEvent::now(who, "token_use", Some(id.clone()), outcome.is_ok())
        })
        .await;
        self.as_principal(&outcome?).await
    }

    /// Appends to the audit log; a failure is logged, not returned (the
    /// action it records has happened).
    pub(crate) async fn audit(&self, event: AuditEvent) {
        if let Err(e) = self.metadata.append_audit(&event).await {
            tracing::warn!("audit log: {e}");
        }
    }

    /// Records an action by the acting principal.
    pub(crate) async fn audit_action(
        &self,
        action: &str,
        target: impl Into<String>,
        allowed: bool,
        rows: Option<i64>,
        detail: serde_json::Value,
    ) {
        let mut event = AuditEvent::now(&self.principal.name, action, Some(target.into()), allowed);
        event.rows = rows;
        event.detail = detail;
        self.audit(event).await;
    }

    /// Refuses (and audits) an access change the acting principal may not
    /// make: admins may make any; holders of ADMIN on `table` those on it.
    async fn authorize(
        &self,
        action: &str,
        target: &str,
        table: Option<(Zone, &str)>,
    ) -> Result<()> {
        let p = &self.principal;
        let ok = p.is_admin || table.is_some_and(|(z, d)| p.holds(Privilege::Admin, z, d));
        if ok {
            return Ok(());
        }
        let why = match table {
            Some((z, d)) => format!(
                "permission denied: `{}` may not {action} on {target}: it needs the admin role \
                 or ADMIN on {z}/{d}",
                p.name
            ),
            None => format!(
                "permission denied: `{}` may not {action}: it needs the admin role",
                p.name
            ),
        };
        self.audit_action(
            action,
            target,
            false,
            None,
            serde_json::json!({ "reason": why }),
        )
        .await;
        Err(Error::PermissionDenied(why))
    }

    /// Creates a principal, or updates its kind and attributes.
    pub async fn add_principal(
        &self,
        name: &str,
        kind: PrincipalKind,
        attributes: BTreeMap<String, String>,
    ) -> Result<()> {
        self.authorize("add principals", name, None).await?;
        if name.is_empty() || name.contains([':', '/', ' ']) {
            return Err(Error::Invalid(format!(
                "principal name `{name}`: use letters, digits, `-`, `_`, `.` or `@`"
            )));
        }
        let created_at = match self.metadata.access_state().await?.principal(name) {
            Some(p) => p.created_at,
            None => Utc::now(),
        };
        self.metadata
            .put_principal(&Principal {
                name: name.into(),
                kind,
                attributes: attributes.clone(),
                created_at,
            })
            .await?;
        self.audit_action(
            "principal",
            name,
            true,
            None,
            serde_json::json!({ "kind": kind.as_str(), "attributes": attributes }),
        )
        .await;
        Ok(())
    }

    /// Removes a principal with its grants, role memberships and tokens.
    pub async fn remove_principal(&self, name: &str) -> Result<bool> {
        self.authorize("remove principals", name, None).await?;
        if name == "admin" {
            return Err(Error::Invalid(
                "the admin principal cannot be removed".into(),
            ));
        }
        let removed = self.metadata.delete_principal(name).await?;
        self.audit_action("principal_remove", name, true, None, serde_json::json!({}))
            .await;
        Ok(removed)
    }

    /// Creates a role.
    pub async fn add_role(&self, name: &str, description: Option<&str>) -> Result<()> {
        self.authorize("add roles", name, None).await?;
        if name.is_empty() || name.contains([':', '/', ' ']) {
            return Err(Error::Invalid(format!("role name `{name}`")));
        }
        self.metadata.put_role(name, description).await?;
        self.audit_action(
            "role",
            name,
            true,
            None,
            serde_json::json!({ "description": description }),
        )
        .await;
        Ok(())
    }

    /// Removes a role with its memberships and grants.
    pub async fn remove_role(&self, name: &str) -> Result<bool> {
        self.authorize("remove roles", name, None).await?;
        if name == tarn_governance::access::ADMIN_ROLE {
            return Err(Error::Invalid("the admin role cannot be removed".into()));
        }
        let removed = self.metadata.delete_role(name).await?;
        self.audit_action("role_remove", name, true, None, serde_json::json!({}))
            .await;
        Ok(removed)
    }

    /// Adds (or with `member = false` removes) `principal` to `role`.
    pub async fn set_role_member(&self, role: &str, principal: &str, member: bool) -> Result<bool> {
        self.authorize("change role membership", role, None).await?;
        let state = self.metadata.access_state().await?;
        if state.principal(principal).is_none() {
            return Err(Error::Invalid(format!(
                "unknown principal `{principal}` (add it with `tarn principal add {principal}`)"
            )));
        }
        if !state.roles.iter().any(|r| r.name == role) {
            return Err(Error::Invalid(format!(
                "unknown role `{role}` (add it with `tarn role add {role}`)"
            )));
        }
        let changed = self
            .metadata
            .set_role_member(role, principal, member)
            .await?;
        self.audit_action(
            if member {
                "role_assign"
            } else {
                "role_unassign"
            },
            role,
            true,
            None,
            serde_json::json!({ "principal": principal }),
        )
        .await;
        Ok(changed)
    }

    async fn check_grantee(&self, grantee: &Grantee) -> Result<()> {
        let state = self.metadata.access_state().await?;
        let known = match grantee {
            Grantee::User(n) => state.principal(n).is_some(),
            Grantee::Role(n) => state.roles.iter().any(|r| &r.name == n),
        };
        if known {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "unknown {} (see `tarn principal list` and `tarn role list`)",
                grantee
            )))
        }
    }

    /// The grants `privilege` on `target` means. SELECT or INSERT on a table
    /// comes with USAGE on its zone, which reading it needs.
    fn grants_for(
        &self,
        privilege: Privilege,
        target: &GrantTarget,
        grantee: &Grantee,
    ) -> Result<Vec<Grant>> {
        let grant = |securable| Grant {
            grantee: grantee.clone(),
            privilege,
            securable,
            granted_by: self.principal.name.clone(),
            granted_at: Utc::now(),
        };
        Ok(match target {
            GrantTarget::Zone(zone) => {
                if privilege != Privilege::Usage {
                    return Err(Error::Invalid(format!(
                        "{privilege} is granted on a table (e.g. {zone}/customers or {zone}/*); \
                         a zone takes USAGE"
                    )));
                }
                vec![grant(Securable::Zone { zone: *zone })]
            }
            GrantTarget::Table {
                zone,
                dataset,
                columns,
            } => {
                if privilege == Privilege::Usage {
                    return Err(Error::Invalid(format!(
                        "USAGE is granted on a zone: `{zone}`"
                    )));
                }
                let mut out: Vec<Grant> = if columns.is_empty() {
                    vec![grant(Securable::Table {
                        zone: *zone,
                        dataset: dataset.clone(),
                    })]
                } else {
                    if privilege != Privilege::Select || dataset == "*" {
                        return Err(Error::Invalid(
                            "--columns goes with SELECT on one table".into(),
                        ));
                    }
                    columns
                        .iter()
                        .map(|c| {
                            grant(Securable::Column {
                                zone: *zone,
                                dataset: dataset.clone(),
                                column: c.clone(),
                            })
                        })
                        .collect()
                };
                out.push(Grant {
                    privilege: Privilege::Usage,
                    ..grant(Securable::Zone { zone: *zone })
                });
                out
            }
        })
    }

    fn target_table(target: &GrantTarget) -> Option<(Zone, &str)> {
        match target {
            GrantTarget::Zone(_) => None,
            GrantTarget::Table { zone, dataset, .. } => Some((*zone, dataset.as_str())),
        }
    }

    /// Grants `privilege` on `target` to `grantee`. Returns what was granted
    /// (as `PRIVILEGE securable`), including the USAGE a table grant needs.
    pub async fn grant(
        &self,
        privilege: Privilege,
        target: &GrantTarget,
        grantee: &Grantee,
    ) -> Result<Vec<String>> {
        self.change_grants(privilege, target, grantee, true).await
    }

    /// Revokes `privilege` on `target` from `grantee` (USAGE on the zone
    /// stays). Returns what was revoked.
    pub async fn revoke(
        &self,
        privilege: Privilege,
        target: &GrantTarget,
        grantee: &Grantee,
    ) -> Result<Vec<String>> {
        self.change_grants(privilege, target, grantee, false).await
    }

    /// Stores (`give`) or removes the grants `privilege` on `target` means,
    /// and audits what changed. A revoke removes only `privilege` itself.
    async fn change_grants(
        &self,
        privilege: Privilege,
        target: &GrantTarget,
        grantee: &Grantee,
        give: bool,
    ) -> Result<Vec<String>> {
        let (action, changed_key) = if give {
            ("grant", "granted")
        } else {
            ("revoke", "revoked")
        };
        self.authorize(action, &target.to_string(), Self::target_table(target))
            .await?;
        if give {
            self.check_grantee(grantee).await?;
        }
        let mut changed = Vec::new();
        for g in self.grants_for(privilege, target, grantee)? {
            let done = if give {
                self.metadata.put_grant(&g).await?
            } else {
                g.privilege == privilege && self.metadata.delete_grant(&g).await?
            };
            if done {
                changed.push(format!("{} {}", g.privilege, g.securable));
            }
        }
        self.audit_action(
            action,
            grantee.to_string(),
            true,
            None,
            serde_json::json!({ "privilege": privilege, changed_key: changed }),
        )
        .await;
        Ok(changed)
    }

    /// Masks `column` of `zone/dataset` with `mask` for everyone (or the
    /// members of `role`), except members of `except_roles`.
    pub async fn set_mask(&self, rule: MaskRule) -> Result<()> {
        let target = format!("{}/{}.{}", rule.zone, rule.dataset, rule.column);
        self.authorize("mask", &target, Some((rule.zone, &rule.dataset)))
            .await?;
        self.metadata.put_mask(&rule).await?;
        self.audit_action(
            "mask",
            target,
            true,
            None,
            serde_json::to_value(&rule).unwrap_or_default(),
        )
        .await;
        Ok(())
    }

    /// Removes a column mask.
    pub async fn remove_mask(
        &self,
        zone: Zone,
        dataset: &str,
        column: &str,
        role: Option<&str>,
    ) -> Result<bool> {
        let target = format!("{zone}/{dataset}.{column}");
        self.authorize("unmask", &target, Some((zone, dataset)))
            .await?;
        let removed = self
            .metadata
            .delete_mask(zone, dataset, column, role)
            .await?;
        self.audit_action(
            "mask_remove",
            target,
            true,
            None,
            serde_json::json!({ "role": role }),
        )
        .await;
        Ok(removed)
    }

    /// Adds a row filter, after checking that it plans against the table
    /// (when the table exists). Returns its id.
    pub async fn add_row_filter(&self, mut rule: RowFilterRule) -> Result<String> {
        let target = format!("{}/{}", rule.zone, rule.dataset);
        self.authorize("add row filters", &target, Some((rule.zone, &rule.dataset)))
            .await?;
        // Plan it against the table now (with the principal functions
        // standing in as text), rather than at the first restricted query.
        let probe = rule
            .predicate
            .replace("current_principal()", "'admin'")
            .replace("principal_attr(", "coalesce(");
        let sql = format!(
            "SELECT 1 FROM {}.\"{}\" WHERE ({probe})",
            rule.zone,
            rule.dataset.replace('"', "\"\"")
        );
        match self.system_query.without_audit().plan_sql(&sql).await {
            Err(e) if !e.to_string().starts_with("no table") => {
                return Err(Error::Invalid(format!(
                    "row filter `{}` on {target}: {e}",
                    rule.predicate
                )));
            }
            _ => {}
        }
        if rule.id.is_empty() {
            rule.id = format!("rf-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        }
        self.metadata.put_row_filter(&rule).await?;
        self.audit_action(
            "row_filter",
            target,
            true,
            None,
            serde_json::to_value(&rule).unwrap_or_default(),
        )
        .await;
        Ok(rule.id)
    }

    /// Removes a row filter by id.
    pub async fn remove_row_filter(&self, id: &str) -> Result<bool> {
        self.authorize("remove row filters", id, None).await?;
        let removed = self.metadata.delete_row_filter(id).await?;
        self.audit_action("row_filter_remove", id, true, None, serde_json::json!({}))
            .await;
        Ok(removed)
    }

    /// Creates an API token for `principal`, valid for `ttl`.
    pub async fn create_token(&self, principal: &str, ttl: Duration) -> Result<CreatedToken> {
        self.authorize("create tokens", principal, None).await?;
        if self
            .metadata
            .access_state()
            .await?
            .principal(principal)
            .is_none()
        {
            return Err(Error::Invalid(format!("unknown principal `{principal}`")));
        }
        let id = format!("tk_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let token = format!("{id}.{secret}");
        let now = Utc::now();
        let stored = ApiToken {
            id: id.clone(),
            principal: principal.into(),
            token_hash: token_hash(&token),
            created_at: now,
            expires_at: now + ttl,
            revoked_at: None,
            last_used_at: None,
        };
        self.metadata.put_token(&stored).await?;
        self.audit_action(
            "token_create",
            id.clone(),
            true,
            None,
            serde_json::json!({ "principal": principal, "expires_at": stored.expires_at }),
        )
        .await;
        Ok(CreatedToken {
            id,
            token,
            principal: principal.into(),
            expires_at: stored.expires_at,
        })
    }

    /// Revokes a token by id.
    pub async fn revoke_token(&self, id: &str) -> Result<bool> {
        self.authorize("revoke tokens", id, None).await?;
        let revoked = self.metadata.revoke_token(id).await?;
        self.audit_action("token_revoke", id, true, None, serde_json::json!({}))
            .await;
        Ok(revoked)
    }

    /// The audit log, newest first.
    pub async fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        if !self.principal.is_admin {
            return Err(Error::PermissionDenied(format!(
                "permission denied: `{}` may not read the audit log: it needs the admin role",
                self.principal.name
            )));
        }
        Ok(self.metadata.audit(filter).await?)
    }

    /// Masks for the query policy from the compliance rule `pii_masked`:
    /// every column classified as PII, in every zone, for principals
    /// without the rule's `unless_role`.
    async fn classified_masks(&self) -> Result<Vec<MaskRule>> {
        let rules = self.compliance_rules()?;
        let Some((class, unless_role, mask)) = rules.query_masking() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (dataset, columns) in self.effective_classifications().await? {
            for (column, tag) in columns {
                if !tarn_governance::compliance::class_matches(&tag, class) {
                    continue;
                }
                for zone in Zone::ALL {
                    out.push(MaskRule {
                        zone,
                        dataset: dataset.clone(),
                        column: column.clone(),
                        mask,
                        role: None,
                        except_roles: unless_role.map(|r| vec![r.to_string()]).unwrap_or_default(),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// Parses a mask name for the CLI.
pub fn parse_mask(text: &str) -> Result<MaskKind> {
    text.parse().map_err(Error::Invalid)
}
