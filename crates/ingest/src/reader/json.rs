//! JSON readers: NDJSON (one object per line) and JSON arrays of objects.
//! Each record becomes one row of string columns (nested values as JSON text);
//! a line that is not a JSON object is rejected on its own.

use std::borrow::Cow;
use std::io::{BufRead, BufReader, Read};

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{Chunk, Reject, Sink, TextColumns, payload_text};
use crate::error::{Error, Result};

/// Reads NDJSON, or a JSON array when the input starts with `[`.
pub(crate) fn read<R: Read>(
    input: R,
    batch_size: usize,
    file: &str,
    sink: &mut Sink<'_>,
    progress: &dyn Fn(u64),
) -> Result<()> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let starts_with_bracket = loop {
        let buf = input.fill_buf().map_err(|e| Error::input(file, e))?;
        if buf.is_empty() {
            break false;
        }
        if buf.starts_with(b"\xEF\xBB\xBF") {
            input.consume(3);
            continue;
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => break buf[i] == b'[',
            None => {
                let n = buf.len();
                input.consume(n);
            }
        }
    };
    let mut rows = JsonRows::new(batch_size);
    if starts_with_bracket {
        read_array(input, file, &mut rows, sink)?;
    } else {
        read_lines(input, file, &mut rows, sink, progress)?;
    }
    rows.flush(sink)
}

fn read_lines<R: BufRead>(
    mut input: R,
    file: &str,
    rows: &mut JsonRows,
    sink: &mut Sink<'_>,
    progress: &dyn Fn(u64),
) -> Result<()> {
    let mut line = Vec::with_capacity(4096);
    let mut number = 0u64;
    let mut pending = 0u64;
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::input(file, e))?;
        if n == 0 {
            break;
        }
        number += 1;
        pending += n as u64;
        if pending > 1 << 20 {
            progress(pending);
            pending = 0;
        }
        let mut text = line.trim_ascii();
        if number == 1 {
            text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
        }
        if text.is_empty() {
            continue;
        }
        rows.push_json(text, number);
        rows.maybe_flush(sink)?;
    }
    progress(pending);
    Ok(())
}

fn read_array<R: Read>(
    input: R,
    file: &str,
    rows: &mut JsonRows,
    sink: &mut Sink<'_>,
) -> Result<()> {
    struct Elements<'a, 'b> {
        rows: &'a mut JsonRows,
        sink: &'a mut Sink<'b>,
        failed: &'a mut Option<Error>,
    }
    impl<'de> Visitor<'de> for Elements<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array of objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut number = 0u64;
            while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
                number += 1;
                let text = raw.get();
                match serde_json::from_str::<Members>(text) {
                    Ok(obj) => self.rows.push(obj.texts(), text.as_bytes(), number),
                    Err(_) => self.rows.cols.reject(Reject {
                        position: number,
                        field: None,
                        reason: "array element is not a JSON object".into(),
                        payload: payload_text(text.as_bytes()),
                    }),
                }
                if let Err(e) = self.rows.maybe_flush(self.sink) {
                    *self.failed = Some(e);
                    return Err(serde::de::Error::custom("stopped"));
                }
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_reader(input);
    let mut failed = None;
    let v = Elements {
        rows,
        sink,
        failed: &mut failed,
    };
    let res = serde::Deserializer::deserialize_seq(&mut de, v);
    if let Some(e) = failed {
        return Err(e);
    }
    res.and_then(|_| de.end())
        .map_err(|e| Error::input(file, format!("invalid JSON array: {e}")))
}

/// JSON objects turned into rows of string columns.
pub(crate) struct JsonRows {
    pub(crate) cols: TextColumns,
    filled: Vec<bool>,
    /// The column of the j-th key of the previous record.
    order: Vec<usize>,
    batch_size: usize,
}

impl JsonRows {
    pub(crate) fn new(batch_size: usize) -> Self {
        Self {
            cols: TextColumns::new([]),
            filled: Vec::new(),
            order: Vec::new(),
            batch_size,
        }
    }

    /// Adds one object, given as (key, value text) pairs, as a row; `raw` is
    /// its original text. A repeated key keeps its first value.
    pub(crate) fn push<'a>(
        &mut self,
        members: impl Iterator<Item = (&'a str, Option<Cow<'a, str>>)>,
        raw: &[u8],
        position: u64,
    ) {
        self.filled.clear();
        self.filled.resize(self.cols.width(), false);
        for (j, (k, v)) in members.enumerate() {
            // Records mostly list their keys in the same order: try the column
            // the j-th key went to last time before hashing the key.
            let i = match self.order.get(j) {
                Some(&i) if self.cols.name(i) == k => i,
                _ => {
                    let i = self.cols.column(k);
                    if self.order.len() <= j {
                        self.order.resize(j + 1, i);
                    }
                    self.order[j] = i;
                    i
                }
            };
            if self.filled.len() <= i {
                self.filled.resize(i + 1, false);
            }
            if self.filled[i] {
                continue;
            }
            self.cols.push(i, v.as_deref());
            self.filled[i] = true;
        }
        self.cols.end_row(&self.filled, raw, position);
    }

    /// Adds one record given as JSON text; anything but a JSON object is rejected.
    pub(crate) fn push_json(&mut self, text: &[u8], position: u64) {
        match serde_json::from_slice::<Members>(text) {
            Ok(obj) => self.push(obj.texts(), text, position),
            Err(e) => self.cols.reject(Reject {
                position,
                field: None,
                reason: format!("invalid JSON: {e}"),
                payload: payload_text(text),
            }),
        }
    }

    /// Records (rows and rejects) held.
    pub(crate) fn len(&self) -> usize {
        self.cols.len()
    }

    /// Takes the records so far as a chunk.
    pub(crate) fn take(&mut self) -> Chunk {
        self.cols.take()
    }

    pub(crate) fn maybe_flush(&mut self, sink: &mut Sink<'_>) -> Result<()> {
        if self.cols.len() >= self.batch_size {
            sink(self.cols.take())?;
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self, sink: &mut Sink<'_>) -> Result<()> {
        if self.cols.len() > 0 {
            sink(self.cols.take())?;
        }
        Ok(())
    }
}

/// A JSON object's members, borrowed from the input where possible: parsing
/// into `serde_json::Value` would allocate every key and value.
struct Members<'a>(Vec<(Text<'a>, &'a RawValue)>);

impl<'a> Members<'a> {
    /// (key, value as column text) pairs.
    fn texts(&self) -> impl Iterator<Item = (&str, Option<Cow<'_, str>>)> {
        self.0.iter().map(|(k, v)| (k.0.as_ref(), raw_text(v)))
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Object;
        impl<'de> Visitor<'de> for Object {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(entry) = map.next_entry::<Text<'de>, &'de RawValue>()? {
                    out.push(entry);
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(Object)
    }
}

/// A JSON string, borrowed unless it has escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Str;
        impl<'de> Visitor<'de> for Str {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(Str)
    }
}

/// A raw JSON value as column text: strings unescaped, null as null, numbers,
/// booleans and nested values as written.
fn raw_text(v: &RawValue) -> Option<Cow<'_, str>> {
    let s = v.get();
    match s.as_bytes().first() {
        // serde_json has checked the string: without escapes it is what is
        // between the quotes.
        Some(b'"') if !s.contains('\\') => Some(Cow::Borrowed(&s[1..s.len() - 1])),
        Some(b'"') => serde_json::from_str::<Text>(s).ok().map(|t| t.0),
        Some(b'n') => None,
        _ => Some(Cow::Borrowed(s)),
    }
}

/// A JSON value as column text: strings as they are, numbers and booleans as
/// written, nested values as JSON, null as null.
pub(crate) fn scalar_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        other => Some(Cow::Owned(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};

    use super::*;
    use crate::reader::Chunk;

    type Row = (u64, Vec<(String, Option<String>)>);

    fn parse(text: &str) -> (Vec<Row>, Vec<(u64, String)>) {
        let mut rows = Vec::new();
        let mut rejects = Vec::new();
        let mut sink = |c: Chunk| -> Result<()> {
            for i in 0..c.batch.num_rows() {
                let values = c
                    .batch
                    .schema()
                    .fields()
                    .iter()
                    .zip(c.batch.columns())
                    .map(|(f, col)| {
                        let s = col.as_string::<i32>();
                        (
                            f.name().clone(),
                            s.is_valid(i).then(|| s.value(i).to_string()),
                        )
                    })
                    .collect();
                rows.push((c.positions[i], values));
            }
            rejects.extend(c.rejects.into_iter().map(|r| (r.position, r.reason)));
            Ok(())
        };
        read(text.as_bytes(), 2, "t.json", &mut sink, &|_| {}).unwrap();
        (rows, rejects)
    }

    fn kv(k: &str, v: Option<&str>) -> (String, Option<String>) {
        (k.to_string(), v.map(str::to_string))
    }

    #[test]
    fn ndjson_lines_become_text_columns() {
        let text = "\u{FEFF}{\"a\":1,\"b\":\"x\\\"y\"}\n\n{\"b\":null,\"a\":2.5,\"c\":{\"n\":[1]}}\nnot json\n[1]\n";
        let (rows, rejects) = parse(text);
        // `c` first appears in the second record: the first gets null for it.
        assert_eq!(
            rows[0],
            (
                1,
                vec![kv("a", Some("1")), kv("b", Some("x\"y")), kv("c", None)]
            )
        );
        // Keys in another order, a null, a nested value as JSON, a new column.
        assert_eq!(
            rows[1],
            (
                3,
                vec![
                    kv("a", Some("2.5")),
                    kv("b", None),
                    kv("c", Some("{\"n\":[1]}"))
                ]
            )
        );
        assert_eq!(rejects.len(), 2);
        assert_eq!(rejects[0].0, 4);
        assert!(rejects[0].1.starts_with("invalid JSON"));
        assert_eq!(rejects[1].0, 5, "an array is not an object");
    }

    #[test]
    fn json_arrays_are_read_element_by_element() {
        let (rows, rejects) = parse("\u{FEFF} [{\"a\":\"1\"}, 7, {\"a\":\"2\"}]");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1], (3, vec![kv("a", Some("2"))]));
        assert_eq!(
            rejects,
            vec![(2, "array element is not a JSON object".to_string())]
        );
    }
}
