//! The quarantine table: every rejected record with its reason, source position
//! and run id, at `<raw root>/_quarantine/<dataset>`.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use tarn_common::schema::UTC;

use crate::error::{Error, Result};
use crate::reader::Reject;

/// The quarantine table's schema.
pub fn quarantine_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("dataset", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("position", DataType::Int64, false),
        Field::new("field", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("payload", DataType::Utf8, false),
        Field::new(
            "quarantined_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            false,
        ),
    ]))
}

/// Rejected records of one source file as a quarantine batch.
pub(crate) fn quarantine_batch(
    rejects: &[Reject],
    run_id: &str,
    dataset: &str,
    source: &str,
    at_micros: i64,
) -> Result<RecordBatch> {
    let n = rejects.len();
    let repeat = |s: &str| Arc::new(StringArray::from_iter_values(std::iter::repeat_n(s, n)));
    let columns: Vec<ArrayRef> = vec![
        repeat(run_id),
        repeat(dataset),
        repeat(source),
        Arc::new(Int64Array::from_iter_values(
            rejects
                .iter()
                .map(|r| i64::try_from(r.position).unwrap_or(i64::MAX)),
        )),
        Arc::new(StringArray::from_iter(
            rejects.iter().map(|r| r.field.as_deref()),
        )),
        Arc::new(StringArray::from_iter_values(
            rejects.iter().map(|r| r.reason.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rejects.iter().map(|r| r.payload.as_str()),
        )),
        Arc::new(TimestampMicrosecondArray::from(vec![at_micros; n]).with_timezone(UTC)),
    ];
    RecordBatch::try_new(quarantine_schema(), columns)
        .map_err(|e| Error::Internal(format!("quarantine batch: {e}")))
}
