//! Avro object container file reader. Each record becomes a row of string
//! columns (logical types rendered as ISO dates and timestamps), validated
//! like any text record.

use std::collections::HashMap;
use std::io::Read;

use apache_avro::schema::Schema;
use apache_avro::types::Value as Avro;
use chrono::{DateTime, NaiveDate};
use serde_json::{Map, Value};

use super::json::{JsonRows, scalar_text};
use super::{Reject, Sink};
use crate::error::{Error, Result};

/// Reads an Avro OCF from `input`, sending chunks of `batch_size` records to `sink`.
pub(crate) fn read<R: Read>(
    input: R,
    batch_size: usize,
    file: &str,
    sink: &mut Sink<'_>,
) -> Result<()> {
    let reader = apache_avro::Reader::new(input)
        .map_err(|e| Error::input(file, format!("not an Avro object container file: {e}")))?;
    let scales = decimal_scales(reader.writer_schema());
    let mut rows = JsonRows::new(batch_size);
    for (i, value) in reader.enumerate() {
        let position = i as u64 + 1;
        let value = value.map_err(|e| Error::input(file, format!("record {position}: {e}")))?;
        push_value(&mut rows, value, &scales, position);
        rows.maybe_flush(sink)?;
    }
    rows.flush(sink)
}

/// Adds one decoded Avro record as a row (its payload is the record as JSON);
/// a value that is not a record is rejected. `scales` are the writer schema's
/// [`decimal_scales`].
pub(crate) fn push_value(
    rows: &mut JsonRows,
    value: Avro,
    scales: &HashMap<String, usize>,
    position: u64,
) {
    match value {
        Avro::Record(fields) => {
            let obj: Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| {
                    let scale = scales.get(&k).copied().unwrap_or(0);
                    (k, to_json(v, scale))
                })
                .collect();
            let raw = serde_json::to_vec(&obj).expect("JSON values serialize");
            let members = obj.iter().map(|(k, v)| (k.as_str(), scalar_text(v)));
            rows.push(members, &raw, position);
        }
        other => rows.cols.reject(Reject {
            position,
            field: None,
            reason: "Avro value is not a record".into(),
            payload: format!("{other:?}"),
        }),
    }
}

/// The scale of each top-level decimal field of the writer schema.
pub(crate) fn decimal_scales(schema: &Schema) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    if let Schema::Record(r) = schema {
        for f in &r.fields {
            let inner = match &f.schema {
                Schema::Union(u) => u.variants().iter().find(|s| !matches!(s, Schema::Null)),
                s => Some(s),
            };
            if let Some(Schema::Decimal(d)) = inner {
                out.insert(f.name.clone(), d.scale);
            }
        }
    }
    out
}

/// An Avro value as JSON, with logical types as the text tarn's validator parses.
fn to_json(v: Avro, scale: usize) -> Value {
    let ts = |micros: i64| {
        DateTime::from_timestamp_micros(micros)
            .map(|t| Value::String(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()))
            .unwrap_or(Value::Null)
    };
    match v {
        Avro::Null => Value::Null,
        Avro::Boolean(b) => Value::Bool(b),
        Avro::Int(i) => i.into(),
        Avro::Long(l) => l.into(),
        Avro::Float(f) => f.into(),
        Avro::Double(d) => d.into(),
        Avro::String(s) | Avro::Enum(_, s) => Value::String(s),
        Avro::Bytes(b) | Avro::Fixed(_, b) => Value::String(String::from_utf8_lossy(&b).into()),
        Avro::Union(_, inner) => to_json(*inner, scale),
        Avro::Uuid(u) => Value::String(u.to_string()),
        Avro::Date(d) => NaiveDate::from_epoch_days(d)
            .map(|d| Value::String(d.to_string()))
            .unwrap_or(Value::Null),
        Avro::TimestampMillis(ms) | Avro::LocalTimestampMillis(ms) => ts(ms.saturating_mul(1000)),
        Avro::TimestampMicros(us) | Avro::LocalTimestampMicros(us) => ts(us),
        Avro::TimestampNanos(ns) | Avro::LocalTimestampNanos(ns) => ts(ns / 1000),
        Avro::Decimal(d) => {
            let bytes: Vec<u8> = Vec::try_from(d).unwrap_or_default();
            Value::String(decimal_text(&bytes, scale))
        }
        Avro::BigDecimal(b) => Value::String(b.to_string()),
        other => Value::try_from(other).unwrap_or(Value::Null),
    }
}

/// Renders a big-endian two's-complement unscaled integer with `scale` decimals.
fn decimal_text(bytes: &[u8], scale: usize) -> String {
    if bytes.is_empty() || bytes.len() > 16 {
        return String::new();
    }
    let mut v: i128 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
    for b in bytes {
        v = (v << 8) | i128::from(*b);
    }
    let digits = v.unsigned_abs().to_string();
    let sign = if v < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimal_text_handles_sign_and_scale() {
        assert_eq!(super::decimal_text(&[0x04, 0xD2], 2), "12.34");
        assert_eq!(super::decimal_text(&[0xFB, 0x2E], 2), "-12.34");
        assert_eq!(super::decimal_text(&[0x05], 3), "0.005");
        assert_eq!(super::decimal_text(&[0x05], 0), "5");
    }
}
