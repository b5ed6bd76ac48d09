//! The AccessManager's model: principals, roles, grants, column masks, row
//! filters and API tokens, and how they resolve into what one principal may
//! read of one table ([`PrincipalPolicy::table`]).
//!
//! Access is denied by default. A principal reads a table when it (or one of
//! its roles) holds USAGE on the table's zone and SELECT on the table, or
//! SELECT on some of its columns. Members of the `admin` role bypass every
//! check. The query engine enforces the result by rewriting plans (see
//! `tarn_query::access`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tarn_common::Zone;

/// The role whose members may do everything.
pub const ADMIN_ROLE: &str = "admin";

/// A user or service account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Principal {
    /// Unique name, e.g. `alice`.
    pub name: String,
    /// `user` or `service`.
    pub kind: PrincipalKind,
    /// Attributes row filters can refer to, e.g. `region = eu`.
    pub attributes: BTreeMap<String, String>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// Whether a principal is a person or a service account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// A person.
    User,
    /// A service account (pipelines, dashboards).
    Service,
}

impl PrincipalKind {
    /// The kind as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Service => "service",
        }
    }
}

impl FromStr for PrincipalKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "user" => Ok(Self::User),
            "service" => Ok(Self::Service),
            other => Err(format!(
                "principal kind `{other}` (expected user or service)"
            )),
        }
    }
}

/// A named set of principals that grants, masks and filters can target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    /// Unique name, e.g. `analyst`.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Its members.
    pub members: Vec<String>,
}

/// Who a grant is given to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "name")]
pub enum Grantee {
    /// One principal.
    User(String),
    /// Every member of a role.
    Role(String),
}

impl fmt::Display for Grantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(n) => write!(f, "user:{n}"),
            Self::Role(n) => write!(f, "role:{n}"),
        }
    }
}

impl FromStr for Grantee {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("user", n)) if !n.is_empty() => Ok(Self::User(n.into())),
            Some(("role", n)) if !n.is_empty() => Ok(Self::Role(n.into())),
            _ => Err(format!("grantee `{s}` (expected user:NAME or role:NAME)")),
        }
    }
}

/// A privilege.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Privilege {
    /// See and use a zone (needed to read any table in it).
    Usage,
    /// Read a table or a column.
    Select,
    /// Write a table (ingest, process).
    Insert,
    /// Manage a table's grants, masks and filters; implies SELECT and INSERT.
    Admin,
}

impl Privilege {
    /// The privilege as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Usage => "USAGE",
            Self::Select => "SELECT",
            Self::Insert => "INSERT",
            Self::Admin => "ADMIN",
        }
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Privilege {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "USAGE" => Ok(Self::Usage),
            "SELECT" => Ok(Self::Select),
            "INSERT" => Ok(Self::Insert),
            "ADMIN" => Ok(Self::Admin),
            _ => Err(format!(
                "privilege `{s}` (expected usage, select, insert or admin)"
            )),
        }
    }
}

/// What a privilege is granted on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Securable {
    /// A zone.
    Zone {
        /// The zone.
        zone: Zone,
    },
    /// A table (`dataset` may be `*`: every table of the zone).
    Table {
        /// The zone.
        zone: Zone,
        /// The dataset, or `*`.
        dataset: String,
    },
    /// One column of a table.
    Column {
        /// The zone.
        zone: Zone,
        /// The dataset.
        dataset: String,
        /// The column.
        column: String,
    },
}

impl fmt::Display for Securable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zone { zone } => write!(f, "zone:{zone}"),
            Self::Table { zone, dataset } => write!(f, "table:{zone}/{dataset}"),
            Self::Column {
                zone,
                dataset,
                column,
            } => write!(f, "column:{zone}/{dataset}.{column}"),
        }
    }
}

impl FromStr for Securable {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("securable `{s}`");
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        let zone_of = |z: &str| z.parse::<Zone>().map_err(|e| e.to_string());
        match kind {
            "zone" => Ok(Self::Zone {
                zone: zone_of(rest)?,
            }),
            "table" => {
                let (z, d) = rest.split_once('/').ok_or_else(bad)?;
                Ok(Self::Table {
                    zone: zone_of(z)?,
                    dataset: d.into(),
                })
            }
            "column" => {
                let (z, rest) = rest.split_once('/').ok_or_else(bad)?;
                let (d, c) = rest.split_once('.').ok_or_else(bad)?;
                Ok(Self::Column {
                    zone: zone_of(z)?,
                    dataset: d.into(),
                    column: c.into(),
                })
            }
            _ => Err(bad()),
        }
    }
}

/// A privilege on a securable, held by a grantee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Who holds it.
    pub grantee: Grantee,
    /// What it allows.
    pub privilege: Privilege,
    /// On what.
    pub securable: Securable,
    /// Who granted it.
    pub granted_by: String,
    /// When.
    pub granted_at: DateTime<Utc>,
}

/// How a masked column's values are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskKind {
    /// Only the last N characters are shown; the rest become `*`.
    Partial(u32),
    /// A salted SHA-256 hex digest (joins still match, values do not show).
    Hash,
    /// `***` for text (null stays null); null for other types.
    Redact,
    /// Always null.
    Null,
}

impl fmt::Display for MaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Partial(n) => write!(f, "partial:{n}"),
            Self::Hash => f.write_str("hash"),
            Self::Redact => f.write_str("redact"),
            Self::Null => f.write_str("null"),
        }
    }
}

impl FromStr for MaskKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "redact" => Ok(Self::Redact),
            "hash" => Ok(Self::Hash),
            "null" => Ok(Self::Null),
            "partial" => Ok(Self::Partial(4)),
            _ => s
                .strip_prefix("partial:")
                .and_then(|n| n.parse().ok())
                .map(Self::Partial)
                .ok_or_else(|| {
                    format!("mask `{s}` (expected redact, hash, null, partial or partial:N)")
                }),
        }
    }
}

/// A column mask: who sees `column` of `zone/dataset` masked, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskRule {
    /// Zone of the table.
    pub zone: Zone,
    /// Dataset of the table.
    pub dataset: String,
    /// The masked column.
    pub column: String,
    /// The mask.
    pub mask: MaskKind,
    /// Only members of this role see the mask (`None`: everyone).
    pub role: Option<String>,
    /// Members of these roles see the value.
    pub except_roles: Vec<String>,
}

/// A row filter: who sees only the rows of `zone/dataset` where `predicate` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowFilterRule {
    /// Stable id (to remove it).
    pub id: String,
    /// Zone of the table.
    pub zone: Zone,
    /// Dataset of the table.
    pub dataset: String,
    /// A SQL predicate over the table's columns; `principal_attr('k')` is the
    /// reader's attribute `k` and `current_principal()` its name.
    pub predicate: String,
    /// Only members of this role are filtered (`None`: everyone).
    pub role: Option<String>,
    /// Members of these roles see every row.
    pub except_roles: Vec<String>,
}

/// An API token. Only a hash of the secret is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiToken {
    /// Public id (the part of the token before the dot).
    pub id: String,
    /// The principal it authenticates.
    pub principal: String,
    /// BLAKE3 hash of the whole token.
    pub token_hash: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was last used.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The hash stored for a token secret.
pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// Everything the AccessManager knows, as read from the metadata store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessState {
    /// Every principal.
    pub principals: Vec<Principal>,
    /// Every role, with its members.
    pub roles: Vec<Role>,
    /// Every grant.
    pub grants: Vec<Grant>,
    /// Every column mask.
    pub masks: Vec<MaskRule>,
    /// Every row filter.
    pub row_filters: Vec<RowFilterRule>,
}

impl AccessState {
    /// The principal `name`, if it exists.
    pub fn principal(&self, name: &str) -> Option<&Principal> {
        self.principals.iter().find(|p| p.name == name)
    }

    /// The roles `principal` is a member of.
    pub fn roles_of(&self, principal: &str) -> BTreeSet<String> {
        self.roles
            .iter()
            .filter(|r| r.members.iter().any(|m| m == principal))
            .map(|r| r.name.clone())
            .collect()
    }

    /// What `principal` may read, or an error if it does not exist.
    pub fn policy_for(&self, principal: &str) -> Result<PrincipalPolicy, String> {
        let p = self.principal(principal).ok_or_else(|| {
            format!("unknown principal `{principal}` (see `tarn principal list`)")
        })?;
        let roles = self.roles_of(principal);
        let applies = |grantee: &Grantee| match grantee {
            Grantee::User(n) => n == principal,
            Grantee::Role(r) => roles.contains(r),
        };
        let targets = |role: &Option<String>, except: &[String]| {
            role.as_ref().is_none_or(|r| roles.contains(r))
                && !except.iter().any(|r| roles.contains(r))
        };
        Ok(PrincipalPolicy {
            name: p.name.clone(),
            attributes: p.attributes.clone(),
            is_admin: roles.contains(ADMIN_ROLE),
            grants: self
                .grants
                .iter()
                .filter(|g| applies(&g.grantee))
                .map(|g| (g.privilege, g.securable.clone()))
                .collect(),
            masks: self
                .masks
                .iter()
                .filter(|m| targets(&m.role, &m.except_roles))
                .cloned()
                .collect(),
            row_filters: self
                .row_filters
                .iter()
                .filter(|f| targets(&f.role, &f.except_roles))
                .cloned()
                .collect(),
            roles,
            default_masks: Vec::new(),
        })
    }
}

/// What one principal may do: its grants (direct and through roles) and the
/// masks and row filters that apply to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrincipalPolicy {
    /// The principal's name.
    pub name: String,
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
    /// Its roles.
    pub roles: BTreeSet<String>,
    /// Whether it is a member of `admin`.
    pub is_admin: bool,
    grants: BTreeSet<(Privilege, Securable)>,
    masks: Vec<MaskRule>,
    row_filters: Vec<RowFilterRule>,
    /// Masks applied where no explicit mask is set (classified PII).
    default_masks: Vec<MaskRule>,
}

/// Which columns of a table a principal may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnAccess {
    /// Every column.
    All,
    /// Only these.
    Only(BTreeSet<String>),
}

/// What a principal may read of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableAccess {
    /// Everything, unmasked and unfiltered (admins).
    Unrestricted,
    /// Nothing; the message names the missing privilege.
    Denied(String),
    /// Some columns, some masked, rows filtered.
    Restricted {
        /// The readable columns.
        columns: ColumnAccess,
        /// Masked columns and their masks.
        masks: BTreeMap<String, MaskKind>,
        /// Predicates every returned row satisfies (ANDed).
        row_filters: Vec<String>,
    },
}

impl PrincipalPolicy {
    /// A policy for `admin`, to whom nothing applies.
    pub fn admin() -> Self {
        Self {
            name: "admin".into(),
            attributes: BTreeMap::new(),
            roles: BTreeSet::from([ADMIN_ROLE.to_string()]),
            is_admin: true,
            grants: BTreeSet::new(),
            masks: Vec::new(),
            row_filters: Vec::new(),
            default_masks: Vec::new(),
        }
    }

    /// Adds masks applied to columns that have no explicit mask for this
    /// principal (classified PII, by compliance rule).
    pub fn with_default_masks(mut self, masks: Vec<MaskRule>) -> Self {
        let roles = &self.roles;
        self.default_masks = masks
            .into_iter()
            .filter(|m| {
                m.role.as_ref().is_none_or(|r| roles.contains(r))
                    && !m.except_roles.iter().any(|r| roles.contains(r))
            })
            .collect();
        self
    }

    /// Whether it holds `privilege` on `zone/dataset` (ADMIN implies the others).
    pub fn holds(&self, privilege: Privilege, zone: Zone, dataset: &str) -> bool {
        if self.is_admin {
            return true;
        }
        [privilege, Privilege::Admin].iter().any(|p| {
            [dataset, "*"].iter().any(|d| {
                self.grants.contains(&(
                    *p,
                    Securable::Table {
                        zone,
                        dataset: (*d).to_string(),
                    },
                ))
            })
        })
    }

    /// Whether it holds USAGE on `zone`.
    pub fn has_usage(&self, zone: Zone) -> bool {
        self.is_admin
            || self
                .grants
                .contains(&(Privilege::Usage, Securable::Zone { zone }))
    }

    /// What it may read of `zone/dataset`.
    pub fn table(&self, zone: Zone, dataset: &str) -> TableAccess {
        if self.is_admin {
            return TableAccess::Unrestricted;
        }
        let columns = if self.holds(Privilege::Select, zone, dataset) {
            ColumnAccess::All
        } else {
            let cols: BTreeSet<String> = self
                .grants
                .iter()
                .filter_map(|(p, s)| match s {
                    Securable::Column {
                        zone: z,
                        dataset: d,
                        column,
                    } if *p == Privilege::Select && *z == zone && d == dataset => {
                        Some(column.clone())
                    }
                    _ => None,
                })
                .collect();
            if cols.is_empty() {
                return TableAccess::Denied(format!(
                    "permission denied: `{}` lacks SELECT on {zone}/{dataset} \
                     (grant it with `tarn grant select {zone}/{dataset} --to {}`)",
                    self.name, self.name
                ));
            }
            ColumnAccess::Only(cols)
        };
        if !self.has_usage(zone) {
            return TableAccess::Denied(format!(
                "permission denied: `{}` lacks USAGE on zone {zone} \
                 (grant it with `tarn grant usage {zone} --to {}`)",
                self.name, self.name
            ));
        }
        let mut masks = BTreeMap::new();
        for m in self.masks.iter().chain(&self.default_masks) {
            if m.zone != zone || m.dataset != dataset {
                continue;
            }
            let explicit = self
                .masks
                .iter()
                .any(|e| e.zone == zone && e.dataset == dataset && e.column == m.column);
            let is_default = !self.masks.contains(m);
            if is_default && explicit {
                continue;
            }
            // The most restrictive mask wins (MaskKind orders by restriction).
            masks
                .entry(m.column.clone())
                .and_modify(|k: &mut MaskKind| *k = (*k).max(m.mask))
                .or_insert(m.mask);
        }
        let row_filters = self
            .row_filters
            .iter()
            .filter(|f| f.zone == zone && f.dataset == dataset)
            .map(|f| f.predicate.clone())
            .collect();
        TableAccess::Restricted {
            columns,
            masks,
            row_filters,
        }
    }

    /// A hash of everything that shapes what it reads (for cache keys).
    pub fn fingerprint(&self) -> String {
        let text = serde_json::to_string(self).expect("policy serializes");
        blake3::hash(text.as_bytes()).to_hex()[..16].to_string()
    }
}
