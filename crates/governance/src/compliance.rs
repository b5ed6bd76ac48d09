//! The ComplianceChecker: the rules of `compliance.yaml` and their evaluation
//! against what the lake declares and holds.
//!
//! ```yaml
//! rules:
//!   - name: documented
//!     kind: required_metadata
//!     zones: [cleansed, curated]
//!     fields: [owner, description, classification]
//!     blocking: true
//!   - name: pii-masked
//!     kind: pii_masked          # masked by cleanse outside raw, and in queries
//!     unless_role: pii_reader   # for principals without this role
//!     mask: redact
//!     blocking: true
//!   - name: pii-retention
//!     kind: retention
//!     classification: pii
//!     max_days: 1095
//!   - name: restricted-stays-raw
//!     kind: allowed_zones
//!     classification: restricted
//!     zones: [raw]
//!   - name: no-negative-amounts
//!     kind: sql
//!     sql: SELECT count(*) FROM curated.user_events WHERE amount < 0
//! ```
//!
//! A blocking rule that fails for a dataset stops its ingest (rules about the
//! raw zone) or its promotion (rules about the other zones).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use tarn_common::Zone;

use crate::access::MaskKind;
use crate::error::{Error, Result};

/// The contents of `compliance.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplianceRules {
    /// The rules, checked in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// One rule. (Unknown keys are caught by the kind's own fields: `serde`
/// cannot deny them on a struct with a flattened part.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Unique name, used in reports and errors.
    pub name: String,
    /// What it checks.
    #[serde(flatten)]
    pub kind: RuleKind,
    /// Whether a failure stops ingest and promotion of the dataset.
    #[serde(default)]
    pub blocking: bool,
    /// Only these datasets (default: all).
    #[serde(default)]
    pub datasets: Vec<String>,
}

/// The kinds of rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleKind {
    /// Datasets in `zones` must declare `fields` (owner, description,
    /// classification).
    RequiredMetadata {
        /// The zones it applies to (default: all).
        #[serde(default = "all_zones")]
        zones: Vec<Zone>,
        /// `owner`, `description`, `classification`.
        fields: Vec<String>,
    },
    /// Columns classified as PII are masked or dropped by cleanse (so no
    /// zone but raw holds them in clear), and queries by principals without
    /// `unless_role` see them masked in every zone.
    PiiMasked {
        /// The classification that counts as PII (default `pii`).
        #[serde(default = "pii")]
        classification: String,
        /// Members of this role read PII in clear.
        #[serde(default)]
        unless_role: Option<String>,
        /// The mask queries apply (default redact).
        #[serde(default)]
        mask: Option<String>,
    },
    /// Datasets with columns of `classification` keep rows in the cleansed
    /// and curated zones at most `max_days` and at least `min_days`.
    Retention {
        /// e.g. `pii`.
        classification: String,
        /// The longest retention allowed; a zone without retention fails it.
        #[serde(default)]
        max_days: Option<u32>,
        /// The shortest retention allowed.
        #[serde(default)]
        min_days: Option<u32>,
    },
    /// Datasets with `classification` may only have tables in `zones`.
    AllowedZones {
        /// e.g. `restricted`.
        classification: String,
        /// Where such data may be.
        zones: Vec<Zone>,
    },
    /// A SQL assertion: passes when the query returns no row, or one row
    /// whose first value is 0, false or null.
    Sql {
        /// The query.
        sql: String,
    },
}

fn all_zones() -> Vec<Zone> {
    Zone::ALL.to_vec()
}

fn pii() -> String {
    "pii".into()
}

impl ComplianceRules {
    /// Reads `compliance.yaml`; a missing file means no rules.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::Invalid(format!("{}: {e}", path.display()))),
        };
        Self::parse(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }

    /// Parses the YAML text of a rules file.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let rules: Self = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        let mut names = BTreeSet::new();
        for r in &rules.rules {
            if !names.insert(&r.name) {
                return Err(format!("rule `{}` is defined twice", r.name));
            }
            if let RuleKind::PiiMasked {
                mask: Some(mask), ..
            } = &r.kind
            {
                mask.parse::<MaskKind>()
                    .map_err(|e| format!("rule `{}`: {e}", r.name))?;
            }
            if let RuleKind::RequiredMetadata { fields, .. } = &r.kind
                && let Some(f) = fields
                    .iter()
                    .find(|f| !["owner", "description", "classification"].contains(&f.as_str()))
            {
                return Err(format!(
                    "rule `{}`: unknown field `{f}` (expected owner, description, classification)",
                    r.name
                ));
            }
        }
        Ok(rules)
    }

    /// The query-time masking rule, if there is one: the PII
    /// classification, the role that reads it in clear and the mask.
    pub fn query_masking(&self) -> Option<(&str, Option<&str>, MaskKind)> {
        self.rules.iter().find_map(|r| match &r.kind {
            RuleKind::PiiMasked {
                classification,
                unless_role,
                mask,
            } => Some((
                classification.as_str(),
                unless_role.as_deref(),
                mask.as_deref()
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(MaskKind::Redact),
            )),
            _ => None,
        })
    }
}

/// What the checker knows of one dataset.
#[derive(Debug, Clone, Default)]
pub struct DatasetFacts {
    /// Dataset name.
    pub name: String,
    /// The zones it has (or its pipeline will give it) tables in.
    pub zones: BTreeSet<Zone>,
    /// Owner, from tarn.yaml or the catalog.
    pub owner: Option<String>,
    /// Description, from tarn.yaml or the catalog.
    pub description: Option<String>,
    /// Dataset-level classification (a `classification:<level>` tag).
    pub classification: Option<String>,
    /// Column → classification tag (`pii`, `pii:email`, ...), from tarn.yaml
    /// and the catalog (reviewed tags win).
    pub columns: BTreeMap<String, String>,
    /// Columns cleanse masks or drops.
    pub cleansed_away: BTreeSet<String>,
    /// Retention in days per zone, where set.
    pub retention_days: BTreeMap<Zone, u32>,
}

impl DatasetFacts {
    /// Whether the dataset carries `classification` (on a column or itself).
    /// `pii` matches `pii` and `pii:email`.
    pub fn has_class(&self, classification: &str) -> bool {
        self.classification.as_deref() == Some(classification)
            || self
                .columns
                .values()
                .any(|t| class_matches(t, classification))
    }
}

/// Whether tag `tag` (e.g. `pii:email`) belongs to `classification` (`pii`).
pub fn class_matches(tag: &str, classification: &str) -> bool {
    tag == classification
        || tag
            .strip_prefix(classification)
            .is_some_and(|rest| rest.starts_with(':'))
}

/// The outcome of one rule for one dataset (or for the lake).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleResult {
    /// The rule's name.
    pub rule: String,
    /// Its kind.
    pub kind: String,
    /// The dataset it was checked on (`None` for SQL assertions).
    pub dataset: Option<String>,
    /// The zone it concerns, if one.
    pub zone: Option<Zone>,
    /// Whether it passed.
    pub passed: bool,
    /// Whether a failure blocks ingest and promotion.
    pub blocking: bool,
    /// What was found.
    pub evidence: String,
}

impl Rule {
    fn applies_to(&self, dataset: &str) -> bool {
        self.datasets.is_empty() || self.datasets.iter().any(|d| d == dataset)
    }

    fn kind_name(&self) -> &'static str {
        match self.kind {
            RuleKind::RequiredMetadata { .. } => "required_metadata",
            RuleKind::PiiMasked { .. } => "pii_masked",
            RuleKind::Retention { .. } => "retention",
            RuleKind::AllowedZones { .. } => "allowed_zones",
            RuleKind::Sql { .. } => "sql",
        }
    }

    fn result(
        &self,
        dataset: Option<&str>,
        zone: Option<Zone>,
        passed: bool,
        evidence: String,
    ) -> RuleResult {
        RuleResult {
            rule: self.name.clone(),
            kind: self.kind_name().into(),
            dataset: dataset.map(str::to_string),
            zone,
            passed,
            blocking: self.blocking,
            evidence,
        }
    }

    /// Evaluates this rule on `d` (SQL rules are evaluated by the caller and
    /// yield nothing here).
    pub fn check(&self, d: &DatasetFacts) -> Vec<RuleResult> {
        if !self.applies_to(&d.name) {
            return Vec::new();
        }
        let name = d.name.as_str();
        match &self.kind {
            RuleKind::RequiredMetadata { zones, fields } => d
                .zones
                .iter()
                .filter(|z| zones.contains(z))
                .map(|z| {
                    let missing: Vec<&str> = fields
                        .iter()
                        .map(String::as_str)
                        .filter(|f| match *f {
                            "owner" => d.owner.as_deref().is_none_or(str::is_empty),
                            "description" => d.description.as_deref().is_none_or(str::is_empty),
                            _ => d.classification.is_none() && d.columns.is_empty(),
                        })
                        .collect();
                    let evidence = if missing.is_empty() {
                        format!("{z}/{name} declares {}", fields.join(", "))
                    } else {
                        format!("{z}/{name} has no {}", missing.join(", "))
                    };
                    self.result(Some(name), Some(*z), missing.is_empty(), evidence)
                })
                .collect(),
            RuleKind::PiiMasked { classification, .. } => {
                let pii: Vec<(&String, &String)> = d
                    .columns
                    .iter()
                    .filter(|(_, t)| class_matches(t, classification))
                    .collect();
                d.zones
                    .iter()
                    .filter(|z| **z != Zone::Raw)
                    .map(|z| {
                        let clear: Vec<String> = pii
                            .iter()
                            .filter(|(c, _)| !d.cleansed_away.contains(*c))
                            .map(|(c, t)| format!("{c} ({t})"))
                            .collect();
                        let evidence = if pii.is_empty() {
                            format!("{name} has no {classification} columns")
                        } else if clear.is_empty() {
                            format!(
                                "every {classification} column of {name} is masked or dropped \
                                 by cleanse before {z}"
                            )
                        } else {
                            format!(
                                "{z}/{name} would hold {classification} in clear: {} (mask or \
                                 drop them in cleanse)",
                                clear.join(", ")
                            )
                        };
                        self.result(Some(name), Some(*z), clear.is_empty(), evidence)
                    })
                    .collect()
            }
            RuleKind::Retention {
                classification,
                max_days,
                min_days,
            } => {
                if !d.has_class(classification) {
                    return Vec::new();
                }
                d.zones
                    .iter()
                    .filter(|z| matches!(z, Zone::Cleansed | Zone::Curated))
                    .map(|z| {
                        let days = d.retention_days.get(z).copied();
                        let (passed, evidence) = match (days, max_days, min_days) {
                            (None, Some(max), _) => (
                                false,
                                format!(
                                    "{z}/{name} holds {classification} data with no retention \
                                     (at most {max} days allowed)"
                                ),
                            ),
                            (Some(d), Some(max), _) if d > *max => (
                                false,
                                format!("{z}/{name} keeps rows {d} days (at most {max})"),
                            ),
                            (Some(d), _, Some(min)) if d < *min => (
                                false,
                                format!("{z}/{name} keeps rows {d} days (at least {min})"),
                            ),
                            (Some(d), _, _) => (true, format!("{z}/{name} keeps rows {d} days")),
                            (None, None, _) => {
                                (true, format!("{z}/{name} keeps rows indefinitely"))
                            }
                        };
                        self.result(Some(name), Some(*z), passed, evidence)
                    })
                    .collect()
            }
            RuleKind::AllowedZones {
                classification,
                zones,
            } => {
                if !d.has_class(classification) {
                    return Vec::new();
                }
                d.zones
                    .iter()
                    .map(|z| {
                        let ok = zones.contains(z);
                        let evidence = if ok {
                            format!("{classification} data of {name} may be in {z}")
                        } else {
                            format!("{classification} data of {name} is not allowed in {z}")
                        };
                        self.result(Some(name), Some(*z), ok, evidence)
                    })
                    .collect()
            }
            RuleKind::Sql { .. } => Vec::new(),
        }
    }

    /// The result of a SQL rule given the first value its query returned
    /// (`None`: no row), or the query's error.
    pub fn sql_result(&self, outcome: std::result::Result<Option<String>, String>) -> RuleResult {
        let (passed, evidence) = match outcome {
            Ok(None) => (true, "the query returned no row".to_string()),
            Ok(Some(v)) => {
                let ok = matches!(v.as_str(), "0" | "false" | "" | "NULL" | "null");
                (ok, format!("the query returned {v}"))
            }
            Err(e) => (false, format!("the query failed: {e}")),
        };
        self.result(None, None, passed, evidence)
    }
}
