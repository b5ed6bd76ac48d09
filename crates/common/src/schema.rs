//! Dataset schemas: what every record of a dataset must look like.
//!
//! A schema comes from an Avro `.avsc` (a record of primitive, logical and enum
//! fields, each optionally a union with `null`) or is inferred from the first
//! ingest, and is pinned in the catalog as Avro JSON. [`DatasetSchema::arrow_schema`]
//! gives the Arrow/Delta types the data is stored with.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// The time zone every stored timestamp is normalized to.
pub const UTC: &str = "UTC";

/// The type of one field, Avro's primitive and logical types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// `boolean`
    Boolean,
    /// `int` (32 bits)
    Int,
    /// `long` (64 bits)
    Long,
    /// `float`
    Float,
    /// `double`
    Double,
    /// `string`
    String,
    /// `bytes`
    Bytes,
    /// `int` with logical type `date`
    Date,
    /// `long` with logical type `timestamp-millis`
    TimestampMillis,
    /// `long` with logical type `timestamp-micros`
    TimestampMicros,
    /// `bytes`/`fixed` with logical type `decimal`
    Decimal {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: i8,
    },
    /// `string` with logical type `uuid`
    Uuid,
    /// `enum` with its symbols
    Enum {
        /// The enum's Avro name.
        name: String,
        /// Allowed symbols.
        symbols: Vec<String>,
    },
}

impl FieldType {
    /// The Arrow type values of this field are stored as.
    ///
    /// Timestamps are stored as microseconds in UTC, the only timestamp type Delta
    /// readers agree on; uuid and enum values are strings.
    pub fn arrow_type(&self) -> DataType {
        match self {
            FieldType::Boolean => DataType::Boolean,
            FieldType::Int => DataType::Int32,
            FieldType::Long => DataType::Int64,
            FieldType::Float => DataType::Float32,
            FieldType::Double => DataType::Float64,
            FieldType::String | FieldType::Uuid | FieldType::Enum { .. } => DataType::Utf8,
            FieldType::Bytes => DataType::Binary,
            FieldType::Date => DataType::Date32,
            FieldType::TimestampMillis | FieldType::TimestampMicros => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
            }
            FieldType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
        }
    }

    /// A short name for messages, e.g. `timestamp-millis` or `enum`.
    pub fn name(&self) -> String {
        match self {
            FieldType::Boolean => "boolean".into(),
            FieldType::Int => "int".into(),
            FieldType::Long => "long".into(),
            FieldType::Float => "float".into(),
            FieldType::Double => "double".into(),
            FieldType::String => "string".into(),
            FieldType::Bytes => "bytes".into(),
            FieldType::Date => "date".into(),
            FieldType::TimestampMillis => "timestamp-millis".into(),
            FieldType::TimestampMicros => "timestamp-micros".into(),
            FieldType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            FieldType::Uuid => "uuid".into(),
            FieldType::Enum { name, .. } => format!("enum {name}"),
        }
    }

    /// The field type that stores values of an Arrow type, if there is one.
    pub fn from_arrow(dt: &DataType) -> Option<Self> {
        Some(match dt {
            DataType::Boolean => FieldType::Boolean,
            DataType::Int8 | DataType::Int16 | DataType::Int32 => FieldType::Int,
            DataType::Int64 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => {
                FieldType::Long
            }
            DataType::Float16 | DataType::Float32 => FieldType::Float,
            DataType::Float64 => FieldType::Double,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => FieldType::String,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => FieldType::Bytes,
            DataType::Date32 | DataType::Date64 => FieldType::Date,
            DataType::Timestamp(TimeUnit::Second | TimeUnit::Millisecond, _) => {
                FieldType::TimestampMillis
            }
            DataType::Timestamp(_, _) => FieldType::TimestampMicros,
            DataType::Decimal128(p, s) => FieldType::Decimal {
                precision: *p,
                scale: *s,
            },
            DataType::Dictionary(_, v) => return Self::from_arrow(v),
            _ => return None,
        })
    }

    fn to_avro(&self) -> Value {
        match self {
            FieldType::Boolean => json!("boolean"),
            FieldType::Int => json!("int"),
            FieldType::Long => json!("long"),
            FieldType::Float => json!("float"),
            FieldType::Double => json!("double"),
            FieldType::String => json!("string"),
            FieldType::Bytes => json!("bytes"),
            FieldType::Date => json!({"type": "int", "logicalType": "date"}),
            FieldType::TimestampMillis => {
                json!({"type": "long", "logicalType": "timestamp-millis"})
            }
            FieldType::TimestampMicros => {
                json!({"type": "long", "logicalType": "timestamp-micros"})
            }
            FieldType::Decimal { precision, scale } => json!({
                "type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale
            }),
            FieldType::Uuid => json!({"type": "string", "logicalType": "uuid"}),
            FieldType::Enum { name, symbols } => {
                json!({"type": "enum", "name": name, "symbols": symbols})
            }
        }
    }
}

/// One field of a dataset schema.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    /// Column name.
    pub name: String,
    /// Value type.
    pub field_type: FieldType,
    /// Whether null is allowed (an Avro union with `null`).
    pub nullable: bool,
    /// Avro default, if any.
    pub default: Option<Value>,
    /// Documentation.
    pub doc: Option<String>,
}

impl FieldSpec {
    /// A nullable field without default or doc.
    pub fn nullable(name: impl Into<String>, field_type: FieldType) -> Self {
        Self {
            name: name.into(),
            field_type,
            nullable: true,
            default: None,
            doc: None,
        }
    }

    /// The Arrow field this spec is stored as.
    pub fn arrow_field(&self) -> Field {
        Field::new(&self.name, self.field_type.arrow_type(), self.nullable)
    }
}

/// The schema of a dataset: an Avro record.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSchema {
    /// Record name.
    pub name: String,
    /// Record namespace.
    pub namespace: Option<String>,
    /// Fields, in order.
    pub fields: Vec<FieldSpec>,
}

impl DatasetSchema {
    /// Parses an Avro schema (`.avsc` text). The top level must be a record whose
    /// fields are primitive, logical or enum types, optionally in a union with null.
    pub fn from_avsc(text: &str) -> Result<Self> {
        apache_avro::Schema::parse_str(text)
            .map_err(|e| Error::Schema(format!("invalid Avro schema: {e}")))?;
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Error::Schema(format!("invalid Avro schema JSON: {e}")))?;
        let obj = v
            .as_object()
            .filter(|o| o.get("type") == Some(&json!("record")))
            .ok_or_else(|| Error::Schema("the top level of an .avsc must be a record".into()))?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("record")
            .to_string();
        let namespace = obj
            .get("namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let fields = obj
            .get("fields")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::Schema("record has no `fields` array".into()))?
            .iter()
            .map(parse_field)
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            name,
            namespace,
            fields,
        })
    }

    /// This schema as Avro JSON (the form pinned in the catalog).
    pub fn to_avsc(&self) -> String {
        let fields: Vec<Value> = self
            .fields
            .iter()
            .map(|f| {
                let t = f.field_type.to_avro();
                let mut o = serde_json::Map::new();
                o.insert("name".into(), json!(f.name));
                if f.nullable {
                    o.insert("type".into(), json!(["null", t]));
                    o.insert("default".into(), Value::Null);
                } else {
                    o.insert("type".into(), t);
                    if let Some(d) = &f.default {
                        o.insert("default".into(), d.clone());
                    }
                }
                if let Some(doc) = &f.doc {
                    o.insert("doc".into(), json!(doc));
                }
                Value::Object(o)
            })
            .collect();
        let mut o = serde_json::Map::new();
        o.insert("type".into(), json!("record"));
        o.insert("name".into(), json!(self.name));
        if let Some(ns) = &self.namespace {
            o.insert("namespace".into(), json!(ns));
        }
        o.insert("fields".into(), Value::Array(fields));
        serde_json::to_string_pretty(&Value::Object(o)).expect("JSON values always serialize")
    }

    /// The Arrow schema data of this dataset is stored with.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.fields
                .iter()
                .map(FieldSpec::arrow_field)
                .collect::<Vec<_>>(),
        ))
    }

    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// A schema with one nullable field per column of an Arrow schema; columns of
    /// types tarn cannot store are reported.
    pub fn from_arrow(name: &str, schema: &Schema) -> Result<Self> {
        let fields = schema
            .fields()
            .iter()
            .map(|f| {
                FieldType::from_arrow(f.data_type())
                    .map(|t| FieldSpec::nullable(f.name(), t))
                    .ok_or_else(|| {
                        Error::Schema(format!(
                            "column `{}` has type {} which tarn cannot store yet",
                            f.name(),
                            f.data_type()
                        ))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            name: avro_name(name),
            namespace: None,
            fields,
        })
    }
}

/// A valid Avro name made from a dataset name.
pub fn avro_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

fn parse_field(v: &Value) -> Result<FieldSpec> {
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Schema("a field has no name".into()))?
        .to_string();
    let t = v
        .get("type")
        .ok_or_else(|| Error::Schema(format!("field `{name}` has no type")))?;
    let (field_type, nullable) = match t {
        Value::Array(branches) => {
            let non_null: Vec<&Value> = branches.iter().filter(|b| *b != "null").collect();
            if non_null.len() != 1 {
                return Err(Error::Schema(format!(
                    "field `{name}`: only unions of null and one type are supported"
                )));
            }
            (
                parse_type(&name, non_null[0])?,
                non_null.len() < branches.len(),
            )
        }
        other => (parse_type(&name, other)?, false),
    };
    Ok(FieldSpec {
        name,
        field_type,
        nullable,
        default: v.get("default").cloned(),
        doc: v.get("doc").and_then(Value::as_str).map(str::to_string),
    })
}

fn parse_type(field: &str, t: &Value) -> Result<FieldType> {
    let unsupported = |what: &str| {
        Error::Schema(format!(
            "field `{field}`: Avro type {what} is not supported yet (records, arrays, maps and fixed)"
        ))
    };
    match t {
        Value::String(s) => primitive(s).ok_or_else(|| unsupported(s)),
        Value::Object(o) => {
            let base = o.get("type").and_then(Value::as_str).unwrap_or_default();
            let logical = o.get("logicalType").and_then(Value::as_str);
            let int = |k: &str| o.get(k).and_then(Value::as_i64);
            match (base, logical) {
                ("int", Some("date")) => Ok(FieldType::Date),
                ("long", Some("timestamp-millis" | "local-timestamp-millis")) => {
                    Ok(FieldType::TimestampMillis)
                }
                ("long", Some("timestamp-micros" | "local-timestamp-micros")) => {
                    Ok(FieldType::TimestampMicros)
                }
                ("bytes" | "fixed", Some("decimal")) => {
                    let precision = int("precision").unwrap_or(38);
                    let scale = int("scale").unwrap_or(0);
                    if !(1..=38).contains(&precision) || !(0..=precision).contains(&scale) {
                        return Err(Error::Schema(format!(
                            "field `{field}`: decimal({precision},{scale}) is out of range (precision 1..=38)"
                        )));
                    }
                    Ok(FieldType::Decimal {
                        precision: precision as u8,
                        scale: scale as i8,
                    })
                }
                ("string", Some("uuid")) => Ok(FieldType::Uuid),
                ("enum", _) => Ok(FieldType::Enum {
                    name: o
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or(field)
                        .to_string(),
                    symbols: o
                        .get("symbols")
                        .and_then(Value::as_array)
                        .map(|s| {
                            s.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default(),
                }),
                // Unknown logical types fall back to their underlying type, as the Avro spec says.
                (b, _) => primitive(b).ok_or_else(|| unsupported(b)),
            }
        }
        other => Err(unsupported(&other.to_string())),
    }
}

fn primitive(s: &str) -> Option<FieldType> {
    Some(match s {
        "boolean" => FieldType::Boolean,
        "int" => FieldType::Int,
        "long" => FieldType::Long,
        "float" => FieldType::Float,
        "double" => FieldType::Double,
        "string" => FieldType::String,
        "bytes" => FieldType::Bytes,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const AVSC: &str = r#"{"type":"record","name":"user_events","fields":[
        {"name":"user_id","type":"long"},
        {"name":"event_type","type":{"type":"enum","name":"EventType","symbols":["view","click","purchase"]}},
        {"name":"timestamp","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"amount","type":["null",{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}],"default":null},
        {"name":"session_id","type":["null",{"type":"string","logicalType":"uuid"}]},
        {"name":"day","type":{"type":"int","logicalType":"date"}}
    ]}"#;

    #[test]
    fn parses_logical_types_unions_and_enums() {
        let s = DatasetSchema::from_avsc(AVSC).unwrap();
        assert_eq!(s.fields.len(), 6);
        assert_eq!(s.fields[0].field_type, FieldType::Long);
        assert!(!s.fields[0].nullable);
        assert!(
            matches!(&s.fields[1].field_type, FieldType::Enum { symbols, .. } if symbols.len() == 3)
        );
        assert_eq!(s.fields[2].field_type, FieldType::TimestampMillis);
        assert_eq!(
            s.fields[3].field_type,
            FieldType::Decimal {
                precision: 10,
                scale: 2
            }
        );
        assert!(s.fields[3].nullable);
        assert_eq!(s.fields[4].field_type, FieldType::Uuid);
        let arrow = s.arrow_schema();
        assert_eq!(
            arrow.field(2).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(arrow.field(5).data_type(), &DataType::Date32);
    }

    #[test]
    fn avsc_round_trips() {
        let s = DatasetSchema::from_avsc(AVSC).unwrap();
        let again = DatasetSchema::from_avsc(&s.to_avsc()).unwrap();
        assert_eq!(s.fields.len(), again.fields.len());
        for (a, b) in s.fields.iter().zip(&again.fields) {
            assert_eq!(a.field_type, b.field_type);
            assert_eq!(a.nullable, b.nullable);
        }
    }

    #[test]
    fn rejects_invalid_and_unsupported_schemas() {
        assert!(DatasetSchema::from_avsc("{").is_err());
        let nested = r#"{"type":"record","name":"r","fields":[{"name":"a","type":{"type":"array","items":"int"}}]}"#;
        let msg = DatasetSchema::from_avsc(nested).unwrap_err().to_string();
        assert!(msg.contains("field `a`"), "{msg}");
    }
}
