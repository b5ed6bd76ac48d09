//! Format readers. Each turns a byte stream into [`Chunk`]s of at most
//! `batch_size` records: parsed records as Arrow columns (strings for text
//! formats), plus the records that could not be parsed at all as [`Reject`]s.
//! Readers run on a blocking thread and hand each chunk to a sink.

pub(crate) mod avro;
pub(crate) mod csv;
pub(crate) mod json;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};

use crate::error::Result;

/// A record that failed parsing or validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    /// Line (text formats) or record number (1-based) in the source file.
    pub position: u64,
    /// The failing field, if one is to blame.
    pub field: Option<String>,
    /// Why the record was rejected.
    pub reason: String,
    /// The original record: its text, or the record as JSON.
    pub payload: String,
}

/// Where the original text of each parsed record is, for quarantine payloads.
#[derive(Debug, Clone)]
pub enum Payloads {
    /// Text formats: record `i` is `raw[spans[i].0..spans[i].1]`.
    Text {
        /// The chunk's records, back to back.
        raw: Vec<u8>,
        /// Byte range of each record in `raw`.
        spans: Vec<(usize, usize)>,
    },
    /// Typed formats: the payload is the record rendered as JSON.
    Rows,
}

/// Up to `batch_size` records read from one file.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Parsed records (strings for text formats, typed for Parquet).
    pub batch: RecordBatch,
    /// Line or record number of each parsed record.
    pub positions: Vec<u64>,
    /// Original text of parsed records.
    pub payloads: Payloads,
    /// Records that could not be parsed.
    pub rejects: Vec<Reject>,
}

/// Receives chunks as a reader produces them.
pub(crate) type Sink<'a> = dyn FnMut(Chunk) -> Result<()> + 'a;

/// String columns built row by row, for text formats. Columns can appear
/// mid-stream (a JSON key seen for the first time); earlier rows get nulls.
pub(crate) struct TextColumns {
    names: Vec<String>,
    index: HashMap<String, usize>,
    builders: Vec<StringBuilder>,
    rows: usize,
    raw: Vec<u8>,
    spans: Vec<(usize, usize)>,
    positions: Vec<u64>,
    rejects: Vec<Reject>,
}

impl TextColumns {
    pub(crate) fn new(names: impl IntoIterator<Item = String>) -> Self {
        let mut t = Self {
            names: Vec::new(),
            index: HashMap::new(),
            builders: Vec::new(),
            rows: 0,
            raw: Vec::new(),
            spans: Vec::new(),
            positions: Vec::new(),
            rejects: Vec::new(),
        };
        for n in names {
            t.column(&n);
        }
        t
    }

    /// Index of column `name`, adding it (null for earlier rows) if new.
    pub(crate) fn column(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let mut b = StringBuilder::new();
        b.append_nulls(self.rows);
        self.builders.push(b);
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), self.names.len() - 1);
        self.names.len() - 1
    }

    /// The name of column `i`.
    pub(crate) fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Appends one value to column `i` of the current row.
    #[inline]
    pub(crate) fn push(&mut self, i: usize, value: Option<&str>) {
        self.builders[i].append_option(value);
    }

    /// Ends the current row: columns without a value get null. `filled` says
    /// which columns got one.
    pub(crate) fn end_row(&mut self, filled: &[bool], raw: &[u8], position: u64) {
        for (i, b) in self.builders.iter_mut().enumerate() {
            if !filled.get(i).copied().unwrap_or(false) {
                b.append_null();
            }
        }
        self.finish_row(raw, position);
    }

    /// Ends a row to which every column got exactly one value.
    #[inline]
    pub(crate) fn finish_row(&mut self, raw: &[u8], position: u64) {
        let start = self.raw.len();
        self.raw.extend_from_slice(raw);
        self.spans.push((start, self.raw.len()));
        self.positions.push(position);
        self.rows += 1;
    }

    pub(crate) fn reject(&mut self, r: Reject) {
        self.rejects.push(r);
    }

    pub(crate) fn len(&self) -> usize {
        self.rows + self.rejects.len()
    }

    pub(crate) fn width(&self) -> usize {
        self.names.len()
    }

    /// Takes the rows so far as a chunk; the columns stay for the next one.
    pub(crate) fn take(&mut self) -> Chunk {
        let fields: Vec<Field> = self
            .names
            .iter()
            .map(|n| Field::new(n, DataType::Utf8, true))
            .collect();
        let columns: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(self.rows)),
        )
        .expect("text columns have one value per row");
        self.rows = 0;
        Chunk {
            batch,
            positions: std::mem::take(&mut self.positions),
            payloads: Payloads::Text {
                raw: std::mem::take(&mut self.raw),
                spans: std::mem::take(&mut self.spans),
            },
            rejects: std::mem::take(&mut self.rejects),
        }
    }
}

/// Payload text of a record that failed to parse: lossy UTF-8, at most 64 KiB.
pub(crate) fn payload_text(raw: &[u8]) -> String {
    const MAX: usize = 64 * 1024;
    let raw = trim_newline(&raw[..raw.len().min(MAX)]);
    String::from_utf8_lossy(raw).into_owned()
}

pub(crate) fn trim_newline(mut raw: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = raw {
        raw = rest;
    }
    raw
}
