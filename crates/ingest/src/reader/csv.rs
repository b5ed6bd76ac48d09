//! CSV reader: csv-core per record, with line-aware recovery so one malformed
//! record (wrong field count, unbalanced quote, bad UTF-8) is rejected without
//! losing the records around it.

use std::io::Read;

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};
use tarn_common::config::CsvOptions;

use super::{Reject, Sink, TextColumns, payload_text, trim_newline};
use crate::error::{Error, Result};

/// Bytes read from the source at a time.
const READ_SIZE: usize = 4 << 20;
/// Unparsed bytes below which the buffer is refilled.
const REFILL_BELOW: usize = 64 << 10;
/// A quoted field longer than this is taken to be an unbalanced quote.
const MAX_RECORD: usize = 16 << 20;

/// Reads CSV from `input`, sending chunks of `batch_size` records to `sink`.
/// Without a header line, columns take the names in `names` by position (then
/// `col_N`). `progress` is called with the number of bytes consumed.
pub(crate) fn read<R: Read>(
    input: R,
    opts: &CsvOptions,
    names: &[String],
    batch_size: usize,
    file: &str,
    sink: &mut Sink<'_>,
    progress: &dyn Fn(u64),
) -> Result<()> {
    read_sized(
        input, opts, names, batch_size, file, sink, progress, READ_SIZE,
    )
}

/// [`read`] with the refill size as a parameter, so tests can cut records
/// at every possible buffer boundary.
#[allow(clippy::too_many_arguments)]
fn read_sized<R: Read>(
    mut input: R,
    opts: &CsvOptions,
    names: &[String],
    batch_size: usize,
    file: &str,
    sink: &mut Sink<'_>,
    progress: &dyn Fn(u64),
    read_size: usize,
) -> Result<()> {
    let byte = |c: char, what: &str| -> Result<u8> {
        u8::try_from(c)
            .ok()
            .filter(u8::is_ascii)
            .ok_or_else(|| Error::Invalid(format!("CSV {what} must be one ASCII character")))
    };
    let (delimiter, quote) = (
        byte(opts.delimiter, "delimiter")?,
        byte(opts.quote, "quote")?,
    );
    let mut parser = RecordParser {
        reader: ReaderBuilder::new()
            .delimiter(delimiter)
            .quote(quote)
            .build(),
        out: vec![0; 4096],
        ends: vec![0; 64],
    };
    let null_marker = opts.null_marker.as_deref().map(str::as_bytes);

    let mut buf: Vec<u8> = Vec::with_capacity(read_size * 2);
    let mut start = 0usize;
    let mut eof = false;
    let mut line: u64 = 1;
    let mut first = true;
    let mut cols: Option<TextColumns> = None;
    let mut field_ends: Vec<usize> = Vec::new();

    loop {
        // Refill when little is left, so compacting moves few bytes; a record
        // longer than what is left asks for more through `NeedMore`.
        if !eof && buf.len() - start < REFILL_BELOW.min(read_size.div_ceil(2)) {
            buf.drain(..start);
            start = 0;
            let n = fill(&mut input, &mut buf, read_size).map_err(|e| Error::input(file, e))?;
            progress(n as u64);
            eof = n == 0;
            continue;
        }
        if first && (buf.len() >= 3 || eof) {
            if buf.starts_with(b"\xEF\xBB\xBF") {
                start = 3;
            }
            first = false;
        }
        // Line ends between records (blank lines, or the \n of a \r\n that
        // csv-core stopped before) are skipped; `line` counts every \n.
        while let Some(&b) = buf.get(start) {
            if b != b'\n' && b != b'\r' {
                break;
            }
            line += u64::from(b == b'\n');
            start += 1;
        }
        let input_left = &buf[start..];
        if input_left.is_empty() {
            if eof {
                break;
            }
            continue;
        }
        // Fast path: a whole line without quotes is split on the delimiter in
        // place; csv-core handles the header, quoted fields and the last line.
        if let Some(cols) = cols.as_mut()
            && let Some(nl) = memchr::memchr(b'\n', input_left)
        {
            let text = trim_newline(&input_left[..nl]);
            if memchr::memchr(quote, text).is_none()
                && let Ok(text) = std::str::from_utf8(text)
            {
                if !text.trim_ascii().is_empty() {
                    split_line(cols, &mut field_ends, text, delimiter, null_marker, line);
                }
                line += 1;
                start += nl + 1;
                if cols.len() >= batch_size {
                    sink(cols.take())?;
                }
                continue;
            }
        }
        let parsed = parser.parse(input_left, eof);
        let (consumed, nfields) = match parsed {
            Parsed::NeedMore if input_left.len() <= MAX_RECORD => {
                // Read more and parse this record again from its start.
                buf.drain(..start);
                start = 0;
                let n = fill(&mut input, &mut buf, read_size).map_err(|e| Error::input(file, e))?;
                progress(n as u64);
                eof = n == 0;
                continue;
            }
            Parsed::NeedMore => (input_left.len(), usize::MAX),
            Parsed::End => break,
            Parsed::Record { consumed, nfields } => (consumed, nfields),
        };
        let raw = &input_left[..consumed];
        let record_line = line;
        let newlines = memchr::memchr_iter(b'\n', raw).count() as u64;

        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            line += newlines;
            start += consumed;
            continue;
        }
        let cols = match &mut cols {
            Some(c) => c,
            None if nfields == usize::MAX => {
                return Err(Error::input(
                    file,
                    "the first record is longer than 16 MiB: is this really CSV?",
                ));
            }
            None => {
                let names: Vec<String> = if opts.header {
                    (0..nfields)
                        .map(|i| String::from_utf8_lossy(parser.field(i)).trim().to_string())
                        .collect()
                } else {
                    (0..nfields)
                        .map(|i| names.get(i).cloned().unwrap_or(format!("col_{}", i + 1)))
                        .collect()
                };
                check_header(&names, file)?;
                cols = Some(TextColumns::new(names));
                if opts.header {
                    line += newlines;
                    start += consumed;
                    continue;
                }
                cols.as_mut().expect("just set")
            }
        };
        let width = cols.width();
        // A quoted field that spans lines, or runs to the end of the input, may
        // be an unbalanced quote: check its quoting strictly.
        let multi_line = memchr::memchr(b'\n', trim_newline(raw)).is_some();
        let at_end = eof && consumed == input_left.len();
        if (multi_line && nfields != width)
            || ((multi_line || at_end) && !well_quoted(raw, delimiter, quote))
        {
            // A quote opened and swallowed following lines: reject only the first
            // line and parse again from the next one.
            let first_len = memchr::memchr(b'\n', raw).map_or(raw.len(), |i| i + 1);
            cols.reject(Reject {
                position: record_line,
                field: None,
                reason: "malformed CSV: unbalanced quote".into(),
                payload: payload_text(&raw[..first_len]),
            });
            line += 1;
            start += first_len;
        } else if nfields != width {
            cols.reject(Reject {
                position: record_line,
                field: None,
                reason: format!("malformed CSV: expected {width} fields, found {nfields}"),
                payload: payload_text(raw),
            });
            line += newlines;
            start += consumed;
        } else {
            // Fields are contiguous in the parser's output: check UTF-8 once.
            let end = if nfields == 0 {
                0
            } else {
                parser.ends[nfields - 1]
            };
            let text = std::str::from_utf8(&parser.out[..end]).ok().filter(|t| {
                parser.ends[..nfields]
                    .iter()
                    .all(|&e| t.is_char_boundary(e))
            });
            match text {
                Some(text) => {
                    let mut from = 0;
                    for (i, &to) in parser.ends[..nfields].iter().enumerate() {
                        let f = &text[from..to];
                        let null = f.is_empty() || Some(f.as_bytes()) == null_marker;
                        cols.push(i, (!null).then_some(f));
                        from = to;
                    }
                    cols.finish_row(trim_newline(raw), record_line);
                }
                None => {
                    let bad = (0..nfields)
                        .find(|&i| std::str::from_utf8(parser.field(i)).is_err())
                        .unwrap_or(0);
                    let name = cols.names[bad].clone();
                    cols.reject(Reject {
                        position: record_line,
                        field: Some(name),
                        reason: "invalid UTF-8 in field".into(),
                        payload: payload_text(raw),
                    });
                }
            }
            line += newlines;
            start += consumed;
        }
        if cols.len() >= batch_size {
            sink(cols.take())?;
        }
    }
    match &mut cols {
        Some(c) if c.len() > 0 => sink(c.take()),
        Some(_) => Ok(()),
        None => Ok(()),
    }
}

/// Adds one unquoted line as a row, or rejects it if its field count is wrong.
fn split_line(
    cols: &mut TextColumns,
    ends: &mut Vec<usize>,
    text: &str,
    delimiter: u8,
    null_marker: Option<&[u8]>,
    line: u64,
) {
    let width = cols.width();
    ends.clear();
    ends.extend(memchr::memchr_iter(delimiter, text.as_bytes()));
    ends.push(text.len());
    if ends.len() != width {
        cols.reject(Reject {
            position: line,
            field: None,
            reason: format!(
                "malformed CSV: expected {width} fields, found {}",
                ends.len()
            ),
            payload: text.to_string(),
        });
        return;
    }
    let mut from = 0;
    for (i, &to) in ends.iter().enumerate() {
        // The delimiter is ASCII, so every split point is a character boundary.
        let f = &text[from..to];
        let null = f.is_empty() || Some(f.as_bytes()) == null_marker;
        cols.push(i, (!null).then_some(f));
        from = to + 1;
    }
    cols.finish_row(text.as_bytes(), line);
}

/// Whether a record's quoting is strict: quotes open a field and close it right
/// before a delimiter or line end, and every quote that opens also closes.
/// csv-core accepts `"a"b`; across lines that is how an unbalanced quote shows.
fn well_quoted(raw: &[u8], delimiter: u8, quote: u8) -> bool {
    let raw = trim_newline(raw);
    let (mut in_quotes, mut field_start) = (false, true);
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if in_quotes {
            if b == quote {
                if raw.get(i + 1) == Some(&quote) {
                    i += 1;
                } else {
                    in_quotes = false;
                    match raw.get(i + 1) {
                        None | Some(b'\r' | b'\n') => {}
                        Some(&next) if next == delimiter => {}
                        Some(_) => return false,
                    }
                }
            }
        } else if b == quote {
            if !field_start {
                return false;
            }
            in_quotes = true;
        }
        field_start = !in_quotes && (b == delimiter || b == b'\n');
        i += 1;
    }
    !in_quotes
}

fn check_header(names: &[String], file: &str) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for n in names {
        if n.is_empty() {
            return Err(Error::input(
                file,
                "the CSV header has an empty column name",
            ));
        }
        if !seen.insert(n) {
            return Err(Error::input(
                file,
                format!("the CSV header names column `{n}` twice"),
            ));
        }
    }
    Ok(())
}

/// Reads up to `want` more bytes into `buf`; returns how many were read.
fn fill<R: Read>(input: &mut R, buf: &mut Vec<u8>, want: usize) -> std::io::Result<usize> {
    let old = buf.len();
    buf.resize(old + want, 0);
    let mut n = 0;
    while n < want {
        match input.read(&mut buf[old + n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(old);
                return Err(e);
            }
        }
    }
    buf.truncate(old + n);
    Ok(n)
}

enum Parsed {
    /// A whole record: bytes consumed (with its terminator) and field count.
    Record { consumed: usize, nfields: usize },
    /// The record continues past the buffered input.
    NeedMore,
    /// No more records.
    End,
}

/// One csv-core reader and its output buffers; parses one record at a time.
struct RecordParser {
    reader: Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
}

impl RecordParser {
    fn parse(&mut self, input: &[u8], eof: bool) -> Parsed {
        self.reader.reset();
        let (mut nin, mut nout, mut nend) = (0, 0, 0);
        loop {
            let (res, i, o, e) = self.reader.read_record(
                &input[nin..],
                &mut self.out[nout..],
                &mut self.ends[nend..],
            );
            nin += i;
            nout += o;
            nend += e;
            match res {
                ReadRecordResult::InputEmpty if !eof => return Parsed::NeedMore,
                // At end of input, an empty slice tells csv-core to finish the record.
                ReadRecordResult::InputEmpty => {
                    let (res, _, o, e) =
                        self.reader
                            .read_record(&[], &mut self.out[nout..], &mut self.ends[nend..]);
                    nout += o;
                    nend += e;
                    let _ = nout;
                    return match res {
                        ReadRecordResult::Record => Parsed::Record {
                            consumed: nin,
                            nfields: nend,
                        },
                        _ => Parsed::End,
                    };
                }
                ReadRecordResult::OutputFull => self.out.resize(self.out.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                ReadRecordResult::Record => {
                    return Parsed::Record {
                        consumed: nin,
                        nfields: nend,
                    };
                }
                ReadRecordResult::End => return Parsed::End,
            }
        }
    }

    /// Field `i` of the record just parsed.
    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.out[start..self.ends[i]]
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};

    use super::*;

    type Rows = Vec<(u64, Vec<Option<String>>)>;
    type Rejects = Vec<(u64, String, String)>;

    fn parse_with(text: &str, opts: &CsvOptions, read_size: usize) -> (Vec<String>, Rows, Rejects) {
        let mut names = Vec::new();
        let mut rows = Vec::new();
        let mut rejects = Vec::new();
        let mut sink = |c: super::super::Chunk| -> Result<()> {
            names = c
                .batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            for i in 0..c.batch.num_rows() {
                let values = c
                    .batch
                    .columns()
                    .iter()
                    .map(|col| {
                        let s = col.as_string::<i32>();
                        s.is_valid(i).then(|| s.value(i).to_string())
                    })
                    .collect();
                rows.push((c.positions[i], values));
            }
            for r in c.rejects {
                rejects.push((r.position, r.reason, r.payload));
            }
            Ok(())
        };
        let schema_names = ["id".to_string()];
        read_sized(
            text.as_bytes(),
            opts,
            &schema_names,
            3,
            "t.csv",
            &mut sink,
            &|_| {},
            read_size,
        )
        .unwrap();
        (names, rows, rejects)
    }

    fn parse(text: &str) -> (Vec<String>, Rows, Rejects) {
        parse_with(text, &CsvOptions::default(), READ_SIZE)
    }

    fn v(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn quotes_crlf_bom_blank_lines_and_nulls() {
        let text = "\u{FEFF}a,b,c\r\n1,\"x, y\",\r\n\r\n2,\"say \"\"hi\"\"\",NULL\n";
        let opts = CsvOptions {
            null_marker: Some("NULL".into()),
            ..Default::default()
        };
        let (names, rows, rejects) = parse_with(text, &opts, READ_SIZE);
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(
            rows,
            vec![
                (2, vec![v("1"), v("x, y"), None]),
                (4, vec![v("2"), v("say \"hi\""), None]),
            ]
        );
        assert!(rejects.is_empty());
    }

    #[test]
    fn a_quoted_newline_is_one_record_and_lines_stay_counted() {
        let (_, rows, rejects) = parse("a,b\n1,\"two\nlines\"\n3,4\n");
        assert!(rejects.is_empty());
        assert_eq!(rows[0], (2, vec![v("1"), v("two\nlines")]));
        assert_eq!(rows[1], (4, vec![v("3"), v("4")]));
    }

    #[test]
    fn an_unbalanced_quote_costs_only_its_own_line() {
        let (_, rows, rejects) = parse("a,b,c\n1,\"oops,x\n2,y,z\n3,\"q\",w\n");
        assert_eq!(rejects.len(), 1);
        assert_eq!(rejects[0].0, 2);
        assert!(rejects[0].1.contains("unbalanced quote"));
        assert_eq!(rejects[0].2, "1,\"oops,x");
        assert_eq!(
            rows,
            vec![
                (3, vec![v("2"), v("y"), v("z")]),
                (4, vec![v("3"), v("q"), v("w")])
            ]
        );
        // At the end of the input too.
        let (_, rows, rejects) = parse("a,b\n1,2\n3,\"open");
        assert_eq!(rows.len(), 1);
        assert_eq!(rejects.len(), 1);
        assert_eq!(rejects[0].0, 3);
    }

    #[test]
    fn wrong_field_counts_are_rejected_with_the_counts() {
        let (_, rows, rejects) = parse("a,b\n1\n1,2,3\n4,5");
        assert_eq!(rows, vec![(4, vec![v("4"), v("5")])]);
        let reasons: Vec<&str> = rejects.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "malformed CSV: expected 2 fields, found 1",
                "malformed CSV: expected 2 fields, found 3"
            ]
        );
    }

    #[test]
    fn headerless_input_and_other_delimiters() {
        let opts = CsvOptions {
            header: false,
            delimiter: ';',
            ..Default::default()
        };
        let (names, rows, _) = parse_with("1;a\n2;b\n", &opts, READ_SIZE);
        // Named by position from the schema (here just `id`), then col_N.
        assert_eq!(names, ["id", "col_2"]);
        assert_eq!(rows[0], (1, vec![v("1"), v("a")]));
    }

    #[test]
    fn results_do_not_depend_on_where_reads_cut_the_input() {
        let text = "id,text,n\n1,\"multi\nline, quoted\",3\n2,plain,4\n3,\"broken,5\n4,\"é ü\",6\n5,x\n6,y,7";
        let expected = parse(text);
        assert_eq!(expected.1.len(), 4);
        assert_eq!(expected.2.len(), 2);
        for size in 1..=text.len() + 1 {
            assert_eq!(
                parse_with(text, &CsvOptions::default(), size),
                expected,
                "read size {size}"
            );
        }
    }
}
