//! The per-dataset pipeline sections of `tarn.yaml`: `cleanse` (raw →
//! cleansed), `curate` (cleansed → curated) and `consume` (curated →
//! consumption marts), which `tarn process` runs; and the zone policies.
//!
//! ```yaml
//! datasets:
//!   user_events:
//!     cleanse:
//!       rename: { ts: timestamp }
//!       drop: [debug]
//!       trim: [country, event_type]
//!       case: { country: upper, event_type: lower }
//!       empty_as_null: true
//!       timestamps: { timestamp: { formats: ["%d/%m/%Y %H:%M"], timezone: Europe/Berlin } }
//!       cast: { amount: "DECIMAL(10,2)" }
//!       defaults: { country: XX }
//!       dedup: { keys: [event_id], order_by: _ingested_at }
//!       mask: { email: hash, card_number: { partial: 4 } }
//!     curate:
//!       expectations:
//!         - { name: amount_range, between: { column: amount, min: 0, max: 10000 }, severity: quarantine }
//!         - { name: user_known, not_null: user_id, severity: fail }
//!       derive: { amount_eur: "amount * 0.92" }
//!       lookups:
//!         - { dataset: countries, key: country, columns: [country_name, region], unmatched: keep }
//!       partition: { by: day }
//!     consume:
//!       marts:
//!         daily_purchases: |
//!           SELECT CAST("timestamp" AS DATE) AS day, event_type, count(*) AS events, sum(amount) AS revenue
//!           FROM curated.user_events GROUP BY 1, 2
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `cleanse:` standardization, deduplication and masking on the way from raw
/// to cleansed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanseConfig {
    /// Old column name → new name.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Columns left out of the cleansed table.
    #[serde(default)]
    pub drop: Vec<String>,
    /// Text columns whose surrounding whitespace is removed.
    #[serde(default)]
    pub trim: Vec<String>,
    /// Text columns put in one case.
    #[serde(default)]
    pub case: BTreeMap<String, Case>,
    /// Empty (or all-blank) text becomes null.
    #[serde(default = "yes")]
    pub empty_as_null: bool,
    /// Text columns parsed as timestamps with these formats and time zone,
    /// stored in UTC.
    #[serde(default)]
    pub timestamps: BTreeMap<String, TimestampFormat>,
    /// Column → SQL type it is cast to (`BIGINT`, `DOUBLE`, `DECIMAL(10,2)`, …).
    #[serde(default)]
    pub cast: BTreeMap<String, String>,
    /// Column → value used where it is null.
    #[serde(default)]
    pub defaults: BTreeMap<String, serde_json::Value>,
    /// Keep one row per key: the latest by an ordering column.
    #[serde(default)]
    pub dedup: Option<Dedup>,
    /// Column → how it is masked before it leaves raw.
    #[serde(default)]
    pub mask: BTreeMap<String, Mask>,
}

fn yes() -> bool {
    true
}

/// A case to put text in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Case {
    /// `ABC`
    Upper,
    /// `abc`
    Lower,
}

/// How a text column is parsed as a timestamp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampFormat {
    /// chrono formats tried in order (`%Y-%m-%d %H:%M:%S`); RFC 3339 is
    /// always tried first.
    #[serde(default)]
    pub formats: Vec<String>,
    /// IANA time zone of values without an offset (default UTC).
    #[serde(default)]
    pub timezone: Option<String>,
}

/// Deduplication on key columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dedup {
    /// Columns that identify a row.
    pub keys: Vec<String>,
    /// Of rows with equal keys, the one with the greatest value here is kept.
    pub order_by: String,
}

/// How a column is masked: `hash`, `tokenize`, `redact`, or `{partial: N}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Mask {
    /// A masking that takes no setting.
    Kind(MaskKind),
    /// All but the last `partial` characters replaced by `*` (`****1234`).
    Partial {
        /// Characters left visible at the end.
        partial: usize,
    },
}

/// The maskings that take no setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskKind {
    /// Salted SHA-256, hex (salt from `TARN_MASKING_SALT`).
    Hash,
    /// A stable token (the salted hash's first 16 hex digits, prefixed `tok_`).
    Tokenize,
    /// Replaced by `REDACTED`.
    Redact,
}

/// `curate:` quality expectations, enrichment and partitioning on the way from
/// cleansed to curated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurateConfig {
    /// Checks every run applies.
    #[serde(default)]
    pub expectations: Vec<Expectation>,
    /// New column → SQL expression over the row.
    #[serde(default)]
    pub derive: BTreeMap<String, String>,
    /// Joins against reference datasets.
    #[serde(default)]
    pub lookups: Vec<Lookup>,
    /// How the curated table is partitioned and sized.
    #[serde(default)]
    pub partition: Option<Partitioning>,
}

/// One quality expectation. (serde cannot deny unknown fields next to a
/// flattened enum; a misspelt check fails as "no variant" instead.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expectation {
    /// Name, shown in results and quarantine reasons.
    pub name: String,
    /// What is checked.
    #[serde(flatten)]
    pub check: Check,
    /// What a failure does.
    #[serde(default)]
    pub severity: Severity,
}

/// The kinds of expectation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The column has no nulls.
    NotNull(String),
    /// The columns' values are unique together.
    Unique(Vec<String>),
    /// The column's values are among these.
    AcceptedValues {
        /// Column.
        column: String,
        /// Allowed values.
        values: Vec<serde_json::Value>,
    },
    /// The column's values are within bounds (both included).
    Between {
        /// Column.
        column: String,
        /// Lower bound.
        #[serde(default)]
        min: Option<serde_json::Value>,
        /// Upper bound.
        #[serde(default)]
        max: Option<serde_json::Value>,
    },
    /// The column's text matches a regular expression.
    Regex {
        /// Column.
        column: String,
        /// Pattern.
        pattern: String,
    },
    /// The column's text length is within bounds.
    Length {
        /// Column.
        column: String,
        /// Shortest.
        #[serde(default)]
        min: Option<usize>,
        /// Longest.
        #[serde(default)]
        max: Option<usize>,
    },
    /// The run's row count is within bounds.
    RowCount {
        /// Fewest.
        #[serde(default)]
        min: Option<u64>,
        /// Most.
        #[serde(default)]
        max: Option<u64>,
    },
    /// The newest timestamp in the column is at most this old (`2h`, `1d`).
    Freshness {
        /// Timestamp column.
        column: String,
        /// Maximum age.
        max_age: String,
    },
    /// Every value exists in another dataset's column.
    Referential {
        /// Column.
        column: String,
        /// `zone/dataset` it refers to.
        dataset: String,
        /// The column there.
        key: String,
    },
    /// An SQL boolean expression every row satisfies.
    Sql(String),
}

/// What a failed expectation does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The result is recorded; nothing else happens.
    #[default]
    Warn,
    /// Failing rows go to the curated quarantine, tagged with the expectation.
    Quarantine,
    /// The stage commits nothing and the run fails.
    Fail,
}

/// A lookup join against a reference dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    /// The reference dataset: `zone/dataset`, or a name, read from the most
    /// refined zone that has it (curated, cleansed, then raw).
    pub dataset: String,
    /// The join column of the input.
    pub key: String,
    /// The join column of the reference [default: `key`].
    #[serde(default)]
    pub reference_key: Option<String>,
    /// Columns added from the reference.
    pub columns: Vec<String>,
    /// Prepended to the added columns' names (two lookups of one table).
    #[serde(default)]
    pub prefix: Option<String>,
    /// What happens to rows without a match.
    #[serde(default)]
    pub unmatched: Unmatched,
}

/// Rows a lookup finds no match for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmatched {
    /// Kept, with nulls in the added columns.
    #[default]
    Keep,
    /// Sent to the curated quarantine.
    Quarantine,
}

/// Partitioning and file sizing of the curated table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partitioning {
    /// The timestamp column for `day`/`hour` [default: the dataset's `partition_key`].
    #[serde(default)]
    pub column: Option<String>,
    /// `day` or `hour` of the partition key, or `columns`.
    pub by: PartitionBy,
    /// The columns, with `by: columns`.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Target size of data files, in MiB.
    #[serde(default = "default_file_mib")]
    pub target_file_mib: u64,
}

fn default_file_mib() -> u64 {
    128
}

/// What the curated table is partitioned by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionBy {
    /// The date of the dataset's partition key.
    Day,
    /// The date and hour of the partition key.
    Hour,
    /// Listed columns.
    Columns,
}

/// `consume:` SQL-defined marts over curated tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumeConfig {
    /// Mart name → the SQL that defines it.
    #[serde(default)]
    pub marts: BTreeMap<String, String>,
}

/// `policies:` per zone (top level), or a dataset's overrides of them.
///
/// ```yaml
/// policies:
///   raw: { vacuum_hours: 168 }
///   cleansed: { required_masking: [pii] }
///   curated: { retention: { column: timestamp, days: 1095 }, vacuum_hours: 168 }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZonePolicies {
    /// The raw zone (always immutable: only erasure deletes from it).
    #[serde(default)]
    pub raw: ZonePolicy,
    /// The cleansed zone.
    #[serde(default)]
    pub cleansed: ZonePolicy,
    /// The curated zone.
    #[serde(default)]
    pub curated: ZonePolicy,
    /// The consumption zone.
    #[serde(default)]
    pub consumption: ZonePolicy,
}

/// The policy of one zone; every field unset means "no rule".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZonePolicy {
    /// Delete rows older than this (not allowed on raw, which is immutable).
    #[serde(default)]
    pub retention: Option<Retention>,
    /// Vacuum files no version references any more once older than this many hours.
    #[serde(default)]
    pub vacuum_hours: Option<u64>,
    /// How a stage treats new upstream columns: `strict` (the stage fails) or
    /// `additive` (they are added to the zone table).
    #[serde(default)]
    pub schema_evolution: Option<crate::config::SchemaEvolution>,
    /// Classifications (e.g. `pii`) whose columns must be masked by `cleanse`
    /// before they reach this zone.
    #[serde(default)]
    pub required_masking: Vec<String>,
}

impl ZonePolicy {
    /// This policy with every field `over` sets taken from `over`.
    pub fn overridden_by(&self, over: &ZonePolicy) -> ZonePolicy {
        ZonePolicy {
            retention: over.retention.clone().or_else(|| self.retention.clone()),
            vacuum_hours: over.vacuum_hours.or(self.vacuum_hours),
            schema_evolution: over.schema_evolution.or(self.schema_evolution),
            required_masking: if over.required_masking.is_empty() {
                self.required_masking.clone()
            } else {
                over.required_masking.clone()
            },
        }
    }
}

impl ZonePolicies {
    /// The policy of `zone`.
    pub fn zone(&self, zone: crate::Zone) -> &ZonePolicy {
        match zone {
            crate::Zone::Raw => &self.raw,
            crate::Zone::Cleansed => &self.cleansed,
            crate::Zone::Curated => &self.curated,
            crate::Zone::Consumption => &self.consumption,
        }
    }
}

/// Rows whose `column` is older than `days` days are deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// A timestamp or date column.
    pub column: String,
    /// Age in days.
    pub days: u32,
}

/// A dataset's pipeline sections kept in a file of their own
/// (`datasets.NAME.pipeline: pipelines/NAME.yaml`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Raw → cleansed.
    #[serde(default)]
    pub cleanse: Option<CleanseConfig>,
    /// Cleansed → curated.
    #[serde(default)]
    pub curate: Option<CurateConfig>,
    /// Curated → consumption.
    #[serde(default)]
    pub consume: Option<ConsumeConfig>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let yaml = r#"
cleanse:
  rename: { ts: timestamp }
  drop: [debug]
  trim: [country]
  case: { country: upper }
  timestamps: { timestamp: { formats: ["%d/%m/%Y %H:%M"], timezone: Europe/Berlin } }
  cast: { amount: "DECIMAL(10,2)" }
  defaults: { country: XX }
  dedup: { keys: [event_id], order_by: _ingested_at }
  mask: { email: hash, card_number: { partial: 4 } }
curate:
  expectations:
    - { name: amount_range, between: { column: amount, min: 0, max: 10000 }, severity: quarantine }
    - { name: user_known, not_null: user_id, severity: fail }
    - { name: enough, row_count: { min: 1 } }
    - { name: custom, sql: "amount >= 0 OR event_type <> 'purchase'" }
  derive: { amount_eur: "amount * 0.92" }
  lookups:
    - { dataset: countries, key: country, columns: [country_name] }
  partition: { by: day }
consume:
  marts:
    daily: SELECT 1
"#;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Sections {
            cleanse: CleanseConfig,
            curate: CurateConfig,
            consume: ConsumeConfig,
        }
        let s: Sections = serde_yaml_ng::from_str(yaml).unwrap();
        assert!(s.cleanse.empty_as_null, "on by default");
        assert_eq!(s.cleanse.mask["card_number"], Mask::Partial { partial: 4 });
        assert_eq!(s.cleanse.mask["email"], Mask::Kind(MaskKind::Hash));
        assert_eq!(
            s.curate.expectations[1].check,
            Check::NotNull("user_id".into())
        );
        assert_eq!(s.curate.expectations[1].severity, Severity::Fail);
        assert_eq!(s.curate.expectations[2].severity, Severity::Warn);
        assert_eq!(s.curate.lookups[0].unmatched, Unmatched::Keep);
        assert_eq!(s.curate.partition.as_ref().unwrap().target_file_mib, 128);
        assert_eq!(s.consume.marts["daily"], "SELECT 1");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = serde_yaml_ng::from_str::<CleanseConfig>("trimm: [a]").unwrap_err();
        assert!(e.to_string().contains("unknown field `trimm`"), "{e}");
        let e = serde_yaml_ng::from_str::<Expectation>("{name: x, not_nul: a}").unwrap_err();
        assert!(!e.to_string().is_empty());
    }
}
