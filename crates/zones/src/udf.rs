//! `tarn_parse_timestamp(text, time_zone, format, ...)`: text to a UTC
//! timestamp, or null when it cannot be parsed, so that the cleanse stage can
//! quarantine the row with a reason instead of failing the whole run.

use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{Array, AsArray, TimestampMicrosecondBuilder};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Name of the function in SQL.
pub const PARSE_TIMESTAMP: &str = "tarn_parse_timestamp";

/// The function, to register in a session.
pub fn parse_timestamp_udf() -> ScalarUDF {
    ScalarUDF::from(ParseTimestamp {
        signature: Signature::variadic_any(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ParseTimestamp {
    signature: Signature,
}

/// Formats tried when none are given: RFC 3339 first, then these.
const DEFAULT_FORMATS: [&str; 3] = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d"];

/// `text` as microseconds since the epoch, reading a time without offset as
/// local time in `tz`; `None` if no format matches (or the local time does
/// not exist, in a daylight-saving gap).
pub fn parse(text: &str, tz: &Tz, formats: &[String]) -> Option<i64> {
    let text = text.trim();
    let local = |naive: NaiveDateTime| {
        tz.from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc).timestamp_micros())
    };
    let try_one = |fmt: &str| {
        if let Ok(t) = DateTime::parse_from_str(text, fmt) {
            return Some(t.with_timezone(&Utc).timestamp_micros());
        }
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, fmt) {
            return local(naive);
        }
        NaiveDate::parse_from_str(text, fmt)
            .ok()
            .and_then(|d| local(d.and_hms_opt(0, 0, 0)?))
    };
    if formats.is_empty() {
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Some(t.with_timezone(&Utc).timestamp_micros());
        }
        return DEFAULT_FORMATS.iter().find_map(|f| try_one(f));
    }
    formats.iter().find_map(|f| try_one(f))
}

fn literal_text(arg: &ColumnarValue, what: &str) -> Result<String> {
    match arg {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
        ) => Ok(s.clone()),
        _ => exec_err!("{PARSE_TIMESTAMP}: the {what} must be a text literal"),
    }
}

impl ScalarUDFImpl for ParseTimestamp {
    fn name(&self) -> &str {
        PARSE_TIMESTAMP
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if args.len() < 2 {
            return plan_err!("{PARSE_TIMESTAMP}(text, time_zone, format, ...) needs a time zone");
        }
        Ok(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into()),
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let tz_name = literal_text(&args.args[1], "time zone")?;
        let Ok(tz) = Tz::from_str(&tz_name) else {
            return exec_err!("{PARSE_TIMESTAMP}: unknown time zone `{tz_name}`");
        };
        let formats = args.args[2..]
            .iter()
            .map(|a| literal_text(a, "format"))
            .collect::<Result<Vec<_>>>()?;
        let values = args.args[0].to_array(args.number_rows)?;
        let values = arrow::compute::cast(&values, &DataType::Utf8)?;
        let values = values.as_string::<i32>();
        let mut out = TimestampMicrosecondBuilder::with_capacity(values.len());
        for v in values.iter() {
            out.append_option(v.and_then(|s| parse(s, &tz, &formats)));
        }
        Ok(ColumnarValue::Array(Arc::new(
            out.finish().with_timezone("UTC"),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_local_times_offsets_and_defaults() {
        let berlin = Tz::Europe__Berlin;
        let fmt = vec!["%d/%m/%Y %H:%M".to_string()];
        let winter = parse("10/02/2024 10:15", &berlin, &fmt).unwrap();
        assert_eq!(
            DateTime::from_timestamp_micros(winter)
                .unwrap()
                .to_rfc3339(),
            "2024-02-10T09:15:00+00:00"
        );
        assert_eq!(parse("31/02/2024 25:99", &berlin, &fmt), None);
        // The spring-forward gap has no local 02:30.
        assert_eq!(parse("31/03/2024 02:30", &berlin, &fmt), None);
        let utc = Tz::UTC;
        assert_eq!(
            parse("2024-02-10T09:15:00+01:00", &utc, &[]),
            parse("2024-02-10 08:15:00", &utc, &[])
        );
        assert!(parse("2024-02-10", &utc, &[]).is_some());
        assert_eq!(parse("yesterday", &utc, &[]), None);
    }
}
