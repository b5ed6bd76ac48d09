//! DataValidator: checks every record of a chunk against the dataset schema,
//! column by column with Arrow compute, and splits the chunk into valid rows
//! (typed, with the `_ingest_*` columns) and rejects with a reason.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use arrow::compute::{CastOptions, cast_with_options, filter};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::util::display::FormatOptions;
use tarn_common::config::SchemaEvolution;
use tarn_common::schema::UTC;
use tarn_common::{DatasetSchema, FieldSpec, FieldType};

use crate::columns;
use crate::error::{Error, Result};
use crate::reader::{Chunk, Payloads, Reject};

/// The outcome of validating one chunk.
#[derive(Debug)]
pub struct Validated {
    /// Valid rows, typed as the schema says, plus the `_ingest_*` columns.
    pub valid: Option<RecordBatch>,
    /// Rejected records (parse and validation failures).
    pub rejects: Vec<Reject>,
    /// Records read (valid + rejected).
    pub rows_read: usize,
}

/// Validates records against a dataset schema.
#[derive(Debug, Clone)]
pub struct DataValidator {
    schema: DatasetSchema,
    evolution: SchemaEvolution,
    partition_key: Option<String>,
    run_id: String,
    source: String,
    ingested_at_micros: i64,
    added: Vec<FieldSpec>,
}

impl DataValidator {
    /// A validator for `schema`. Rows it passes are tagged with `run_id`,
    /// `source` (file name) and `ingested_at_micros`.
    pub fn new(
        schema: DatasetSchema,
        evolution: SchemaEvolution,
        partition_key: Option<String>,
        run_id: &str,
        source: &str,
        ingested_at_micros: i64,
    ) -> Result<Self> {
        if let Some(key) = &partition_key {
            match schema.field(key).map(|f| &f.field_type) {
                Some(FieldType::TimestampMillis | FieldType::TimestampMicros | FieldType::Date) => {
                }
                Some(other) => {
                    return Err(Error::Invalid(format!(
                        "partition key `{key}` must be a timestamp or date field, not {}",
                        other.name()
                    )));
                }
                None => {
                    return Err(Error::Invalid(format!(
                        "partition key `{key}` is not a field of the schema"
                    )));
                }
            }
        }
        Ok(Self {
            schema,
            evolution,
            partition_key,
            run_id: run_id.to_string(),
            source: source.to_string(),
            ingested_at_micros,
            added: Vec::new(),
        })
    }

    /// The schema as it stands (with fields added by additive evolution).
    pub fn schema(&self) -> &DatasetSchema {
        &self.schema
    }

    /// Fields added by additive schema evolution so far.
    pub fn added_fields(&self) -> &[FieldSpec] {
        &self.added
    }

    /// Points the validator at another source file.
    pub fn set_source(&mut self, source: &str) {
        self.source = source.to_string();
    }

    /// The Arrow schema of the raw table for a dataset schema.
    pub fn table_schema(schema: &DatasetSchema, partitioned: bool) -> SchemaRef {
        let mut fields: Vec<Field> = schema.fields.iter().map(FieldSpec::arrow_field).collect();
        fields.push(Field::new(columns::RUN_ID, DataType::Utf8, false));
        fields.push(Field::new(columns::SOURCE, DataType::Utf8, false));
        fields.push(Field::new(
            columns::INGESTED_AT,
            DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            false,
        ));
        if partitioned {
            fields.push(Field::new(columns::PARTITION_DATE, DataType::Date32, true));
        }
        Arc::new(Schema::new(fields))
    }

    /// Infers a schema from the first chunk of a dataset's first ingest.
    pub fn infer_schema(dataset: &str, chunk: &Chunk) -> Result<DatasetSchema> {
        let mut schema = DatasetSchema::from_arrow(dataset, chunk.batch.schema().as_ref())?;
        for (f, col) in schema.fields.iter_mut().zip(chunk.batch.columns()) {
            if col.data_type() == &DataType::Utf8 {
                f.field_type = infer_text_type(col.as_string::<i32>());
            }
        }
        Ok(schema)
    }

    /// Validates one chunk.
    pub fn validate(&mut self, chunk: Chunk) -> Result<Validated> {
        let Chunk {
            batch,
            positions,
            payloads,
            mut rejects,
        } = chunk;
        let rows_read = batch.num_rows() + rejects.len();
        let n = batch.num_rows();
        let mut errors: Vec<Option<(String, String)>> = vec![None; n];

        self.check_extra_columns(&batch, &mut errors)?;

        let mut out: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields.len() + 4);
        for f in &self.schema.fields {
            let col = match batch.column_by_name(&f.name) {
                Some(c) => c.clone(),
                None => missing_column(f, n),
            };
            let converted = convert(&col, &f.field_type, &f.name, &mut errors)?;
            if !f.nullable && converted.null_count() > 0 {
                for (i, e) in errors.iter_mut().enumerate() {
                    if e.is_none() && converted.is_null(i) {
                        *e = Some((
                            f.name.clone(),
                            format!("required field `{}` is missing or null", f.name),
                        ));
                    }
                }
            }
            out.push(converted);
        }

        let keep: BooleanArray = errors.iter().map(|e| Some(e.is_none())).collect();
        for (i, e) in errors.into_iter().enumerate() {
            if let Some((field, reason)) = e {
                rejects.push(Reject {
                    position: positions[i],
                    field: Some(field),
                    reason,
                    payload: payload(&batch, &payloads, i),
                });
            }
        }
        rejects.sort_by_key(|r| r.position);

        let valid_count = keep.true_count();
        let valid = if valid_count == 0 {
            None
        } else {
            Some(self.finish(out, &keep, &positions)?)
        };
        Ok(Validated {
            valid,
            rejects,
            rows_read,
        })
    }

    /// New columns: quarantined rows (strict) or added fields (additive).
    fn check_extra_columns(
        &mut self,
        batch: &RecordBatch,
        errors: &mut [Option<(String, String)>],
    ) -> Result<()> {
        for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
            if self.schema.field(field.name()).is_some() || col.null_count() == col.len() {
                continue;
            }
            match self.evolution {
                SchemaEvolution::Strict => {
                    for (i, e) in errors.iter_mut().enumerate() {
                        if e.is_none() && col.is_valid(i) {
                            *e = Some((
                                field.name().clone(),
                                format!(
                                    "unknown field `{}` (not in the pinned schema; schema_evolution is strict)",
                                    field.name()
                                ),
                            ));
                        }
                    }
                }
                SchemaEvolution::Additive => {
                    let ft = if col.data_type() == &DataType::Utf8 {
                        infer_text_type(col.as_string::<i32>())
                    } else {
                        FieldType::from_arrow(col.data_type()).ok_or_else(|| {
                            Error::Invalid(format!(
                                "new column `{}` has type {} which tarn cannot store yet",
                                field.name(),
                                col.data_type()
                            ))
                        })?
                    };
                    let spec = FieldSpec::nullable(field.name(), ft);
                    self.schema.fields.push(spec.clone());
                    self.added.push(spec);
                }
            }
        }
        Ok(())
    }

    fn finish(
        &self,
        out: Vec<ArrayRef>,
        keep: &BooleanArray,
        positions: &[u64],
    ) -> Result<RecordBatch> {
        let mut columns = out
            .iter()
            .map(|c| filter(c.as_ref(), keep))
            .collect::<Result<Vec<_>, _>>()
            .map_err(internal)?;
        let n = keep.true_count();
        let mut src = StringBuilder::with_capacity(n, n * (self.source.len() + 8));
        let mut text = format!("{}:", self.source);
        let prefix = text.len();
        let mut digits = itoa::Buffer::new();
        for (i, p) in positions.iter().enumerate() {
            if keep.value(i) {
                text.truncate(prefix);
                text.push_str(digits.format(*p));
                src.append_value(&text);
            }
        }
        columns.push(Arc::new(StringArray::from_iter_values(
            std::iter::repeat_n(self.run_id.as_str(), n),
        )));
        columns.push(Arc::new(src.finish()));
        columns.push(Arc::new(
            TimestampMicrosecondArray::from(vec![self.ingested_at_micros; n]).with_timezone(UTC),
        ));
        if let Some(key) = &self.partition_key {
            let idx = self
                .schema
                .fields
                .iter()
                .position(|f| &f.name == key)
                .expect("checked in new()");
            let date = cast_with_options(&columns[idx], &DataType::Date32, &CastOptions::default())
                .map_err(internal)?;
            columns.push(date);
        }
        let schema = Self::table_schema(&self.schema, self.partition_key.is_some());
        RecordBatch::try_new(schema, columns)
            .map_err(|e| Error::Internal(format!("validated batch: {e}")))
    }
}

/// A column absent from the input: its default, or nulls.
fn missing_column(f: &FieldSpec, n: usize) -> ArrayRef {
    let default = f.default.as_ref().and_then(|d| match d {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    });
    match default {
        Some(d) => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(d, n))),
        None => arrow::array::new_null_array(&DataType::Utf8, n),
    }
}

const SAFE: CastOptions<'static> = CastOptions {
    safe: true,
    format_options: FormatOptions::new(),
};

/// Converts `col` to the storage type of `ft`. Values that do not convert get
/// an error in `errors` (first error per row wins) and become null.
fn convert(
    col: &ArrayRef,
    ft: &FieldType,
    name: &str,
    errors: &mut [Option<(String, String)>],
) -> Result<ArrayRef> {
    let target = ft.arrow_type();
    let text_input = matches!(
        col.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    let col = if text_input && col.data_type() != &DataType::Utf8 {
        cast_with_options(col, &DataType::Utf8, &SAFE).map_err(internal)?
    } else {
        col.clone()
    };
    let converted = match ft {
        FieldType::TimestampMillis | FieldType::TimestampMicros if !text_input => {
            typed_timestamp(&col, ft)?
        }
        FieldType::TimestampMillis | FieldType::TimestampMicros => {
            // Parse as a naive timestamp (strings with an offset are converted to
            // UTC) and label it UTC: same values, without a time-zone lookup per row.
            let naive = DataType::Timestamp(TimeUnit::Microsecond, None);
            let parsed = cast_with_options(&col, &naive, &SAFE).map_err(internal)?;
            let mut out: ArrayRef = Arc::new(
                parsed
                    .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                    .clone()
                    .with_timezone(UTC),
            );
            if out.null_count() > col.null_count() {
                out = epoch_fallback(col.as_string::<i32>(), &out, ft);
            }
            out
        }
        FieldType::Enum { symbols, .. } => {
            let s = cast_with_options(&col, &DataType::Utf8, &SAFE).map_err(internal)?;
            // Enums are small: a linear scan beats hashing every value.
            let allowed: Vec<&str> = symbols.iter().map(String::as_str).collect();
            for (i, v) in s.as_string::<i32>().iter().enumerate() {
                if let Some(v) = v
                    && !allowed.contains(&v)
                    && errors[i].is_none()
                {
                    errors[i] = Some((
                        name.to_string(),
                        format!(
                            "`{}` is not a symbol of enum `{name}` (allowed: {})",
                            clip(v),
                            symbols.join(", ")
                        ),
                    ));
                }
            }
            return Ok(s);
        }
        FieldType::Uuid => {
            let s = cast_with_options(&col, &DataType::Utf8, &SAFE).map_err(internal)?;
            for (i, v) in s.as_string::<i32>().iter().enumerate() {
                if let Some(v) = v
                    && uuid::Uuid::try_parse(v).is_err()
                    && errors[i].is_none()
                {
                    errors[i] = Some((name.to_string(), format!("invalid uuid `{}`", clip(v))));
                }
            }
            return Ok(s);
        }
        _ => cast_with_options(&col, &target, &SAFE).map_err(|e| {
            Error::Invalid(format!(
                "column `{name}` of type {} cannot hold {}: {e}",
                col.data_type(),
                ft.name()
            ))
        })?,
    };
    if converted.null_count() > col.null_count() {
        let shown = cast_with_options(&col, &DataType::Utf8, &SAFE).ok();
        for (i, e) in errors.iter_mut().enumerate() {
            if col.is_valid(i) && converted.is_null(i) && e.is_none() {
                let v = shown
                    .as_ref()
                    .and_then(|s| {
                        s.as_string_opt::<i32>()
                            .map(|s| clip(s.value(i)).to_string())
                    })
                    .unwrap_or_default();
                *e = Some((
                    name.to_string(),
                    format!("invalid {} value `{v}`", ft.name()),
                ));
            }
        }
    }
    Ok(converted)
}

/// Typed (Parquet) input to a timestamp field: integers are epoch millis or
/// micros as the field's logical type says; timestamps are normalized to µs UTC.
fn typed_timestamp(col: &ArrayRef, ft: &FieldType) -> Result<ArrayRef> {
    let target = ft.arrow_type();
    if col.data_type().is_integer() {
        let longs = cast_with_options(col, &DataType::Int64, &SAFE).map_err(internal)?;
        let factor = if *ft == FieldType::TimestampMillis {
            1000
        } else {
            1
        };
        let micros: TimestampMicrosecondArray = longs
            .as_primitive::<arrow::datatypes::Int64Type>()
            .iter()
            .map(|v| v.and_then(|v| v.checked_mul(factor)))
            .collect();
        return Ok(Arc::new(micros.with_timezone(UTC)));
    }
    cast_with_options(col, &target, &SAFE).map_err(internal)
}

/// Text timestamps that are not ISO-8601 may be epoch numbers (millis or micros
/// by the field's logical type).
fn epoch_fallback(input: &StringArray, parsed: &ArrayRef, ft: &FieldType) -> ArrayRef {
    let parsed = parsed.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    let factor = if *ft == FieldType::TimestampMillis {
        1000
    } else {
        1
    };
    let out: TimestampMicrosecondArray = input
        .iter()
        .zip(parsed.iter())
        .map(|(s, p)| {
            p.or_else(|| {
                s.and_then(|s| s.parse::<i64>().ok())
                    .and_then(|v| v.checked_mul(factor))
            })
        })
        .collect();
    Arc::new(out.with_timezone(UTC))
}

/// The narrowest type all values of a string column parse as.
pub(crate) fn infer_text_type(col: &StringArray) -> FieldType {
    let col: ArrayRef = Arc::new(col.clone());
    let parses_as = |dt: &DataType| {
        cast_with_options(&col, dt, &SAFE).is_ok_and(|c| c.null_count() == col.null_count())
    };
    if col.null_count() == col.len() {
        return FieldType::String;
    }
    let strings = col.as_string::<i32>();
    if parses_as(&DataType::Int64) {
        FieldType::Long
    } else if parses_as(&DataType::Float64) {
        FieldType::Double
    } else if strings
        .iter()
        .flatten()
        .all(|s| s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false"))
    {
        FieldType::Boolean
    } else if strings.iter().flatten().all(|s| s.len() == 10) && parses_as(&DataType::Date32) {
        FieldType::Date
    } else if strings.iter().flatten().all(|s| s.len() > 10)
        && parses_as(&FieldType::TimestampMicros.arrow_type())
    {
        FieldType::TimestampMicros
    } else {
        FieldType::String
    }
}

fn payload(batch: &RecordBatch, payloads: &Payloads, i: usize) -> String {
    match payloads {
        Payloads::Text { raw, spans } => {
            let (a, b) = spans[i];
            String::from_utf8_lossy(&raw[a..b]).into_owned()
        }
        Payloads::Rows => {
            let mut w = arrow::json::LineDelimitedWriter::new(Vec::new());
            let row = batch.slice(i, 1);
            if w.write(&row).and_then(|_| w.finish()).is_err() {
                return String::new();
            }
            String::from_utf8_lossy(w.into_inner().trim_ascii_end()).into_owned()
        }
    }
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn internal(e: arrow::error::ArrowError) -> Error {
    Error::Internal(format!("arrow: {e}"))
}

#[cfg(test)]
mod tests {
    use arrow::array::StringArray;
    use arrow::datatypes::TimestampMicrosecondType;

    use super::*;

    fn check(values: &[Option<&str>], ft: &FieldType) -> (ArrayRef, Vec<Option<(String, String)>>) {
        let col: ArrayRef = Arc::new(StringArray::from(values.to_vec()));
        let mut errors = vec![None; values.len()];
        let out = convert(&col, ft, "f", &mut errors).unwrap();
        (out, errors)
    }

    #[test]
    fn timestamps_are_normalized_to_utc_micros() {
        let (out, errors) = check(
            &[
                Some("2024-02-10T12:00:00Z"),
                Some("2024-02-10T14:00:00+02:00"),
                Some("2024-02-10 12:00:00.250"),
                Some("1707566400000"),
                Some("yesterday"),
                None,
            ],
            &FieldType::TimestampMillis,
        );
        let ts = out.as_primitive::<TimestampMicrosecondType>();
        let noon = 1_707_566_400_000_000;
        assert_eq!(ts.value(0), noon);
        assert_eq!(ts.value(1), noon, "offsets are converted to UTC");
        assert_eq!(ts.value(2), noon + 250_000, "naive times are taken as UTC");
        assert_eq!(
            ts.value(3),
            noon,
            "integers are epoch millis for timestamp-millis"
        );
        assert!(
            errors[4]
                .as_ref()
                .unwrap()
                .1
                .contains("invalid timestamp-millis value `yesterday`")
        );
        assert!(
            ts.is_null(5) && errors[5].is_none(),
            "null is not an error here"
        );
        assert_eq!(out.data_type(), &FieldType::TimestampMillis.arrow_type());
    }

    #[test]
    fn enums_uuids_decimals_and_dates_are_checked() {
        let symbols = vec!["a".to_string(), "b".to_string()];
        let (_, errors) = check(
            &[Some("a"), Some("c")],
            &FieldType::Enum {
                name: "E".into(),
                symbols,
            },
        );
        assert!(errors[0].is_none());
        assert!(
            errors[1]
                .as_ref()
                .unwrap()
                .1
                .contains("`c` is not a symbol")
        );

        let (_, errors) = check(
            &[
                Some("0b6c8f1e-8a44-4d0e-9a51-3f1a2b7c9d01"),
                Some("not-a-uuid"),
            ],
            &FieldType::Uuid,
        );
        assert!(errors[0].is_none() && errors[1].is_some());

        let (out, errors) = check(
            &[Some("12.34"), Some("99999999999.0"), Some("x")],
            &FieldType::Decimal {
                precision: 10,
                scale: 2,
            },
        );
        assert_eq!(
            out.as_primitive::<arrow::datatypes::Decimal128Type>()
                .value(0),
            1234
        );
        assert!(errors[1].is_some(), "overflows the precision");
        assert!(errors[2].is_some());

        let (_, errors) = check(&[Some("2024-02-30"), Some("2024-02-29")], &FieldType::Date);
        assert!(errors[0].is_some() && errors[1].is_none());
    }

    #[test]
    fn inference_picks_the_narrowest_type() {
        let infer = |v: &[&str]| infer_text_type(&StringArray::from(v.to_vec()));
        assert_eq!(infer(&["1", "-2"]), FieldType::Long);
        assert_eq!(infer(&["1", "2.5"]), FieldType::Double);
        assert_eq!(infer(&["true", "FALSE"]), FieldType::Boolean);
        assert_eq!(infer(&["2024-01-01", "2024-12-31"]), FieldType::Date);
        assert_eq!(infer(&["2024-01-01T00:00:00Z"]), FieldType::TimestampMicros);
        assert_eq!(infer(&["1", "x"]), FieldType::String);
    }
}
