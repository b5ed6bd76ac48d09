//! RestAPIConnector: pulls the records of a JSON API page by page.
//!
//! Each response's records (the array at `records_path`, or the response
//! itself) become rows exactly as NDJSON lines do; a record that is not a JSON
//! object is rejected on its own. Pages follow the `paginate` style ([`Paging`]).
//! Requests are spaced by `rate_limit` and retried on 429, 5xx and network
//! errors. Secrets (for `auth`) come from environment variables only and never
//! appear in labels, errors or logs.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LINK, RETRY_AFTER};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use tarn_common::config::RestSourceConfig;
use tokio::time::Instant;
use url::Url;

use super::{ChunkSender, CursorRange, ReadStats};
use crate::error::{Error, Result};
use crate::reader::json::{JsonRows, scalar_text};
use crate::reader::{Reject, payload_text};

const USER_AGENT: &str = concat!("tarn/", env!("CARGO_PKG_VERSION"));
const TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_RETRIES: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
const DEFAULT_LIMIT: u32 = 100;
const PAGINATE_SYNTAX: &str =
    "none, page[:PARAM], offset[:PARAM[:LIMIT_PARAM]], cursor:FIELD[:PARAM] or link";
const AUTH_SYNTAX: &str = "bearer:env:VAR, basic:env:USER_VAR:env:PASSWORD_VAR, \
     basic:USER:env:PASSWORD_VAR or header:NAME:env:VAR";

/// What [`read`] saw: the shared counts plus whether the cursor values were timestamps.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RestStats {
    /// Records, bytes, requests and the highest cursor value sent.
    pub stats: ReadStats,
    /// Whether the cursor values were timestamps (`None` without a cursor field
    /// or when no value was read).
    pub cursor_is_timestamp: Option<bool>,
}

/// Checks the spec (URL, pagination and auth syntax, env vars present) before
/// anything is read.
pub(crate) fn check(src: &RestSourceConfig) -> Result<()> {
    Settings::parse(src, &env_var).map(drop)
}

/// Fetches every page, takes the records at `records_path`, keeps those whose
/// cursor field is in `range` (all records without a cursor field) and sends
/// them as chunks of at most `batch_size` records. With `range.after` and a
/// `cursor_param`, the committed cursor is sent as that query parameter: an
/// integer, or an RFC 3339 UTC timestamp when `cursor_is_timestamp`.
pub(crate) async fn read(
    src: &RestSourceConfig,
    range: CursorRange,
    cursor_is_timestamp: bool,
    batch_size: usize,
    tx: ChunkSender,
) -> Result<RestStats> {
    let settings = Settings::parse(src, &env_var)?;
    let reader = Reader::new(settings, range, cursor_is_timestamp, batch_size, tx)?;
    reader.run().await
}

/// The URL without credentials or query secrets, for labels.
pub(crate) fn label(src: &RestSourceConfig) -> String {
    Url::parse(&src.url).map_or_else(|_| "rest source (invalid URL)".into(), |u| redact(&u))
}

/// Looks up environment variables; tests pass their own.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn invalid(message: impl Into<String>) -> Error {
    Error::Invalid(message.into())
}

/// A checked spec, with its secrets resolved.
struct Settings {
    url: Url,
    records_path: Vec<String>,
    paging: Paging,
    auth: Option<Auth>,
    headers: HeaderMap,
    cursor_field: Option<String>,
    cursor_param: Option<String>,
    interval: Option<Duration>,
    max_retries: u32,
}

impl Settings {
    fn parse(src: &RestSourceConfig, env: Env<'_>) -> Result<Self> {
        let url = Url::parse(&src.url).map_err(|e| {
            invalid(format!(
                "rest source url: {e}; expected an http:// or https:// URL"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "rest source url: scheme `{}` is not supported; expected http:// or https://",
                url.scheme()
            )));
        }
        if src.page_size == Some(0) {
            return Err(invalid("rest source page_size must be at least 1"));
        }
        if src.cursor_param.is_some() && src.cursor_field.is_none() {
            return Err(invalid(
                "rest source cursor_param needs cursor_field (the record field whose highest value is sent back)",
            ));
        }
        let records_path = match src.records_path.as_deref() {
            None | Some("") => Vec::new(),
            Some(p) => dotted(p, "records_path")?,
        };
        Ok(Self {
            url,
            records_path,
            paging: Paging::parse(src.paginate.as_deref().unwrap_or("none"), src.page_size)?,
            auth: src
                .auth
                .as_deref()
                .map(|a| Auth::parse(a, env))
                .transpose()?,
            headers: extra_headers(&src.headers)?,
            cursor_field: src.cursor_field.clone(),
            cursor_param: src.cursor_param.clone(),
            interval: interval(src.rate_limit)?,
            max_retries: src.max_retries.unwrap_or(DEFAULT_RETRIES),
        })
    }
}

/// A dotted path (`data`, `result.items`) as its segments.
fn dotted(path: &str, what: &str) -> Result<Vec<String>> {
    let segments: Vec<String> = path.split('.').map(str::to_string).collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(invalid(format!(
            "invalid {what} `{path}`: expected a dotted path such as `data` or `result.items`"
        )));
    }
    Ok(segments)
}

/// The spacing of requests for `rate_limit` requests per second.
fn interval(rate_limit: Option<f64>) -> Result<Option<Duration>> {
    match rate_limit {
        None => Ok(None),
        Some(r) if r.is_finite() && r > 0.0 => Ok(Some(Duration::from_secs_f64(1.0 / r))),
        Some(r) => Err(invalid(format!(
            "rest source rate_limit must be a positive number of requests per second, not {r}"
        ))),
    }
}

/// The `headers` of the spec. Values are marked sensitive: they may hold
/// expanded `${SECRETS}`.
fn extra_headers(headers: &std::collections::BTreeMap<String, String>) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            invalid(format!(
                "rest source headers: `{name}` is not a valid header name"
            ))
        })?;
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            invalid(format!(
                "rest source headers: the value of `{name}` is not a valid header value"
            ))
        })?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// How to get the next page (`paginate`), with the position reached.
#[derive(Debug, Clone, PartialEq)]
enum Paging {
    /// One request.
    None,
    /// `PARAM=1,2,…` plus `per_page=SIZE` when a page size is set.
    Page {
        param: String,
        size: Option<u32>,
        number: u64,
    },
    /// `PARAM=0,LIMIT,…` plus `LIMIT_PARAM=LIMIT`.
    Offset {
        param: String,
        limit_param: String,
        limit: u32,
        offset: u64,
    },
    /// `PARAM=<the value at FIELD in the previous response>`.
    Cursor {
        field: Vec<String>,
        param: String,
        next: Option<String>,
    },
    /// The `rel="next"` target of the previous response's `Link` header.
    Link { next: Option<Url> },
}

impl Paging {
    fn parse(spec: &str, page_size: Option<u32>) -> Result<Self> {
        let bad = || {
            invalid(format!(
                "invalid rest source paginate `{spec}`: expected {PAGINATE_SYNTAX}"
            ))
        };
        let parts: Vec<&str> = spec.trim().split(':').collect();
        if parts.len() > 1 && parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        let name = |i: usize, default: &str| parts.get(i).unwrap_or(&default).to_string();
        Ok(match parts[..] {
            ["none" | ""] => Paging::None,
            ["page", ..] if parts.len() <= 2 => Paging::Page {
                param: name(1, "page"),
                size: page_size,
                number: 1,
            },
            ["offset", ..] if parts.len() <= 3 => Paging::Offset {
                param: name(1, "offset"),
                limit_param: name(2, "limit"),
                limit: page_size.unwrap_or(DEFAULT_LIMIT),
                offset: 0,
            },
            ["cursor", field, ..] if parts.len() <= 3 => {
                let field = dotted(field, "paginate cursor field").map_err(|_| bad())?;
                let last = field.last().map_or("cursor", String::as_str);
                Paging::Cursor {
                    param: parts
                        .get(2)
                        .map_or_else(|| cursor_param(last), |p| p.to_string()),
                    field,
                    next: None,
                }
            }
            ["link"] => Paging::Link { next: None },
            _ => return Err(bad()),
        })
    }

    /// The URL of the page to read now.
    fn url(&self, base: &Url) -> Url {
        match self {
            Paging::Page {
                param,
                size,
                number,
            } => {
                let mut params = vec![(param.as_str(), number.to_string())];
                params.extend(size.map(|s| ("per_page", s.to_string())));
                with_params(base, &params)
            }
            Paging::Offset {
                param,
                limit_param,
                limit,
                offset,
            } => with_params(
                base,
                &[
                    (param, offset.to_string()),
                    (limit_param, limit.to_string()),
                ],
            ),
            Paging::Cursor {
                param,
                next: Some(next),
                ..
            } => with_params(base, &[(param, next.clone())]),
            Paging::Link { next: Some(next) } => next.clone(),
            _ => base.clone(),
        }
    }

    /// Moves to the page after the one at `current`, which held `count`
    /// records; false when it was the last.
    fn advance(
        &mut self,
        current: &Url,
        count: usize,
        headers: &HeaderMap,
        body: &RawValue,
    ) -> std::result::Result<bool, String> {
        match self {
            Paging::None => Ok(false),
            Paging::Page { size, number, .. } => {
                *number += 1;
                Ok(count > 0 && size.is_none_or(|s| count >= s as usize))
            }
            Paging::Offset { limit, offset, .. } => {
                *offset += count as u64;
                Ok(count >= *limit as usize)
            }
            Paging::Cursor { field, next, .. } => {
                *next = next_cursor(body, field)?;
                Ok(next.is_some())
            }
            Paging::Link { next } => {
                *next = match next_link(headers) {
                    Some(target) => Some(
                        current
                            .join(&target)
                            .map_err(|e| format!("the Link header's next URL is invalid: {e}"))?,
                    ),
                    None => None,
                };
                Ok(next.is_some())
            }
        }
    }
}

/// `base` with the query parameters `params` set (replacing any of the same name).
fn with_params<S: AsRef<str>>(base: &Url, params: &[(S, String)]) -> Url {
    let mut url = base.clone();
    let kept: Vec<(String, String)> = base
        .query_pairs()
        .filter(|(k, _)| !params.iter().any(|(p, _)| p.as_ref() == k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut query = url.query_pairs_mut();
    query.clear().extend_pairs(kept);
    for (name, value) in params {
        query.append_pair(name.as_ref(), value);
    }
    drop(query);
    url
}

/// The next-page cursor at `field` in a response: `None` when null, missing or empty.
fn next_cursor(body: &RawValue, field: &[String]) -> std::result::Result<Option<String>, String> {
    let value = lookup(body, field).and_then(|v| serde_json::from_str::<Value>(v.get()).ok());
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s).filter(|s| !s.is_empty())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(format!(
            "the next-page cursor `{}` is not a string or a number",
            field.join(".")
        )),
    }
}

/// The `rel="next"` target of RFC 8288 `Link` headers.
fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|mut rest| {
            while let Some(start) = rest.find('<') {
                let end = start + rest[start..].find('>')?;
                let target = &rest[start + 1..end];
                let tail = &rest[end + 1..];
                // The link's parameters run to the next comma outside quotes.
                let mut quoted = false;
                let stop = tail
                    .char_indices()
                    .find(|&(_, c)| {
                        quoted ^= c == '"';
                        c == ',' && !quoted
                    })
                    .map_or(tail.len(), |(i, _)| i);
                if tail[..stop].split(';').any(is_rel_next) {
                    return Some(target.trim().to_string());
                }
                rest = &tail[stop..];
            }
            None
        })
}

fn is_rel_next(param: &str) -> bool {
    param.split_once('=').is_some_and(|(name, value)| {
        name.trim().eq_ignore_ascii_case("rel")
            && value
                .trim()
                .trim_matches('"')
                .split_whitespace()
                .any(|r| r.eq_ignore_ascii_case("next"))
    })
}

/// The value at a dotted path (object keys, or array indexes) in a JSON document.
fn lookup<'a>(root: &'a RawValue, path: &[String]) -> Option<&'a RawValue> {
    path.iter().try_fold(root, |node, key| {
        let text = node.get();
        if text.starts_with('[') {
            let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
            items.get(key.parse::<usize>().ok()?).copied()
        } else {
            let mut members: HashMap<String, &RawValue> = serde_json::from_str(text).ok()?;
            members.remove(key)
        }
    })
}

/// The records of a response: the array at `path` (null is no records).
fn records_at<'a>(
    root: &'a RawValue,
    path: &[String],
) -> std::result::Result<Vec<&'a RawValue>, String> {
    let node = lookup(root, path)
        .ok_or_else(|| format!("the response has no `{}` (records_path)", path.join(".")))?;
    serde_json::from_str::<Option<Vec<&RawValue>>>(node.get())
        .map(Option::unwrap_or_default)
        .map_err(|_| match path {
            [] => "the response is not a JSON array; set records_path to the field that holds the records"
                .to_string(),
            _ => format!("`{}` (records_path) is not a JSON array", path.join(".")),
        })
}

/// Credentials, resolved from the environment. Not `Debug`: it holds secrets.
enum Auth {
    Bearer(String),
    Basic {
        user: String,
        password: String,
    },
    Header {
        name: HeaderName,
        value: HeaderValue,
    },
}

impl Auth {
    /// Parses `auth`. The spec is never echoed: a mistaken one may hold a secret.
    fn parse(spec: &str, env: Env<'_>) -> Result<Self> {
        let var = |name: &str| {
            env(name).filter(|v| !v.is_empty()).ok_or_else(|| {
                invalid(format!(
                    "rest source auth: environment variable {name} is not set"
                ))
            })
        };
        let parts: Vec<&str> = spec.split(':').collect();
        match parts[..] {
            ["bearer", "env", token] => Ok(Auth::Bearer(var(token)?)),
            ["basic", "env", user, "env", password] => Ok(Auth::Basic {
                user: var(user)?,
                password: var(password)?,
            }),
            ["basic", user, "env", password] if user != "env" && !user.is_empty() => {
                Ok(Auth::Basic {
                    user: user.to_string(),
                    password: var(password)?,
                })
            }
            ["header", name, "env", key] => {
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    invalid(format!(
                        "rest source auth: `{name}` is not a valid header name"
                    ))
                })?;
                let mut value = HeaderValue::from_str(&var(key)?).map_err(|_| {
                    invalid(format!(
                        "rest source auth: environment variable {key} does not hold a valid header value"
                    ))
                })?;
                value.set_sensitive(true);
                Ok(Auth::Header { name, value })
            }
            _ => Err(invalid(format!(
                "invalid rest source auth: expected {AUTH_SYNTAX} (secrets are read from environment variables, never written in the spec)"
            ))),
        }
    }

    fn apply(&self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Basic { user, password } => request.basic_auth(user, Some(password)),
            Auth::Header { name, value } => request.header(name.clone(), value.clone()),
        }
    }
}

/// `url` without credentials, fragment or the values of secret-looking query
/// parameters.
fn redact(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_fragment(None);
    if url.query_pairs().any(|(k, _)| is_secret(&k)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret(&k) {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.into()
}

/// Whether a query parameter looks like it carries a secret (`api_key`,
/// `access_token`, `X-Amz-Signature`, `sig`…).
fn is_secret(name: &str) -> bool {
    const WORDS: [&str; 9] = [
        "auth",
        "credential",
        "password",
        "passwd",
        "pwd",
        "secret",
        "session",
        "sig",
        "signature",
    ];
    let name = name.to_ascii_lowercase();
    name.split(['-', '_', '.']).any(|w| {
        WORDS.contains(&w) || w.ends_with("key") || w.ends_with("token") || w.ends_with("secret")
    })
}

/// Spaces requests at least `interval` apart.
struct Limiter {
    interval: Option<Duration>,
    next: Option<Instant>,
}

impl Limiter {
    async fn wait(&mut self) {
        let Some(interval) = self.interval else {
            return;
        };
        if let Some(at) = self.next {
            tokio::time::sleep_until(at).await;
        }
        self.next = Some(Instant::now() + interval);
    }
}

/// The outcome of one request.
enum Attempt {
    Done(HeaderMap, Bytes),
    /// A 429, 5xx or network error: worth another try, after `wait` if the
    /// server said so.
    Retry {
        why: String,
        wait: Option<Duration>,
    },
    Fail(String),
}

/// The cursor field, and whether its values are timestamps (fixed by the
/// committed cursor, or else by the first value read).
struct CursorField {
    name: String,
    timestamps: Option<bool>,
}

impl CursorField {
    /// The record's cursor value, or why it has none.
    fn value(&mut self, record: &Members) -> std::result::Result<i64, String> {
        let name = &self.name;
        let raw = record
            .get(name)
            .filter(|v| !v.is_null())
            .ok_or_else(|| format!("cursor field `{name}` is missing or null"))?;
        let (value, is_ts) = cursor_value(raw).ok_or_else(|| {
            format!(
                "cursor field `{name}`: {} is neither an integer nor a timestamp",
                clip(raw)
            )
        })?;
        match self.timestamps {
            Some(ts) if ts != is_ts => Err(format!(
                "cursor field `{name}`: {} is {}, but the cursor values are {}",
                clip(raw),
                kind(is_ts),
                if ts { "timestamps" } else { "integers" }
            )),
            _ => {
                self.timestamps = Some(is_ts);
                Ok(value)
            }
        }
    }
}

fn kind(timestamp: bool) -> &'static str {
    if timestamp {
        "a timestamp"
    } else {
        "an integer"
    }
}

fn clip(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// A cursor value as (encoded value, whether it is a timestamp): an integer
/// (JSON number or numeric string), or a timestamp as µs since the epoch.
fn cursor_value(v: &Value) -> Option<(i64, bool)> {
    match v {
        Value::Number(n) => n.as_i64().map(|i| (i, false)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .map(|i| (i, false))
                .or_else(|| timestamp_micros(s).map(|t| (t, true)))
        }
        _ => None,
    }
}

/// An RFC 3339 / ISO 8601 timestamp (`T` or space, optional fraction, `Z`,
/// `±hh:mm`, `±hhmm` or no offset, which is UTC; or a date) as µs since the epoch.
fn timestamp_micros(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, format) {
            return Some(t.timestamp_micros());
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

/// The request parameter that sends back a cursor found in response field
/// `field`: the name without its `next` prefix (`next_cursor` → `cursor`,
/// `nextPageToken` → `pageToken`), as most APIs name them.
fn cursor_param(field: &str) -> String {
    let lower = field.to_ascii_lowercase();
    let rest = if lower.starts_with("next_") {
        &field[5..]
    } else if lower.starts_with("next") && field.len() > 4 {
        &field[4..]
    } else {
        field
    };
    let mut chars = rest.chars();
    match chars.next() {
        Some(c) if rest != field && field.as_bytes()[4].is_ascii_uppercase() => {
            c.to_ascii_lowercase().to_string() + chars.as_str()
        }
        Some(_) => rest.to_string(),
        None => "cursor".into(),
    }
}

/// The committed cursor as a query parameter value.
fn render_cursor(value: i64, timestamp: bool) -> String {
    match DateTime::from_timestamp_micros(value) {
        Some(t) if timestamp => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        _ => value.to_string(),
    }
}

/// A JSON object's members in their order (a `serde_json::Map` would sort them).
struct Members(Vec<(String, Value)>);

impl Members {
    /// The first value of `key`.
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Object;
        impl<'de> Visitor<'de> for Object {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(Object)
    }
}

/// One read of an API: the pages, the rows built so far and the counts.
struct Reader {
    client: Client,
    base: Url,
    paging: Paging,
    records_path: Vec<String>,
    auth: Option<Auth>,
    max_retries: u32,
    limiter: Limiter,
    cursor: Option<CursorField>,
    range: CursorRange,
    rows: JsonRows,
    batch_size: usize,
    tx: ChunkSender,
    stats: ReadStats,
    /// Records received so far, in or out of range.
    position: u64,
}

impl Reader {
    fn new(
        settings: Settings,
        range: CursorRange,
        cursor_is_timestamp: bool,
        batch_size: usize,
        tx: ChunkSender,
    ) -> Result<Self> {
        let client = Client::builder()
            .user_agent(USER_AGENT)
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(same_host_redirects())
            .default_headers(settings.headers)
            .build()
            .map_err(|e| {
                Error::Internal(format!("cannot build the HTTP client: {}", describe(e)))
            })?;
        let mut base = settings.url;
        if let (Some(after), Some(param)) = (range.after, &settings.cursor_param) {
            base = with_params(&base, &[(param, render_cursor(after, cursor_is_timestamp))]);
        }
        let batch_size = batch_size.max(1);
        Ok(Self {
            client,
            base,
            paging: settings.paging,
            records_path: settings.records_path,
            auth: settings.auth,
            max_retries: settings.max_retries,
            limiter: Limiter {
                interval: settings.interval,
                next: None,
            },
            cursor: settings.cursor_field.map(|name| CursorField {
                name,
                timestamps: range.after.map(|_| cursor_is_timestamp),
            }),
            range,
            rows: JsonRows::new(batch_size),
            batch_size,
            tx,
            stats: ReadStats::default(),
            position: 0,
        })
    }

    /// Reads every page, stopping on the paging style's last page or a loop.
    async fn run(mut self) -> Result<RestStats> {
        let mut url = self.paging.url(&self.base);
        let mut seen = HashSet::new();
        let mut previous: Option<Bytes> = None;
        loop {
            if !seen.insert(url.to_string()) {
                return Err(Error::input(
                    redact(&url),
                    "pagination loop: the API pointed to a page that was already read",
                ));
            }
            let (headers, body) = self.fetch(&url).await?;
            let fail = |m: String| Error::input(redact(&url), m);
            let root: &RawValue = serde_json::from_slice(&body)
                .map_err(|e| fail(format!("the response is not JSON: {e}")))?;
            let records = records_at(root, &self.records_path).map_err(fail)?;
            let count = records.len();
            if count > 0 && previous.as_ref() == Some(&body) {
                return Err(fail(
                    "pagination loop: the page is the same as the previous one (does the API take the paging parameters?)".into(),
                ));
            }
            for record in records {
                self.record(record).await?;
            }
            tracing::debug!(url = %redact(&url), records = count, "read page");
            let more = self
                .paging
                .advance(&url, count, &headers, root)
                .map_err(fail)?;
            if !more {
                break;
            }
            previous = Some(body);
            url = self.paging.url(&self.base);
        }
        self.flush().await?;
        Ok(RestStats {
            stats: self.stats,
            cursor_is_timestamp: self.cursor.and_then(|c| c.timestamps),
        })
    }

    /// Adds one record to the rows (or rejects), unless its cursor is out of range.
    async fn record(&mut self, raw: &RawValue) -> Result<()> {
        self.position += 1;
        let text = raw.get();
        let Ok(members) = serde_json::from_str::<Members>(text) else {
            return self
                .reject(None, "record is not a JSON object".into(), text)
                .await;
        };
        if let Some(cursor) = &mut self.cursor {
            match cursor.value(&members) {
                Ok(v) if !self.range.contains(v) => return Ok(()),
                Ok(v) => self.stats.max_cursor = self.stats.max_cursor.max(Some(v)),
                Err(reason) => {
                    let field = Some(cursor.name.clone());
                    return self.reject(field, reason, text).await;
                }
            }
        }
        let members = members.0.iter().map(|(k, v)| (k.as_str(), scalar_text(v)));
        self.rows.push(members, text.as_bytes(), self.position);
        self.sent().await
    }

    async fn reject(&mut self, field: Option<String>, reason: String, text: &str) -> Result<()> {
        self.rows.cols.reject(Reject {
            position: self.position,
            field,
            reason,
            payload: payload_text(text.as_bytes()),
        });
        self.sent().await
    }

    /// Counts a record and sends the chunk when it is full.
    async fn sent(&mut self) -> Result<()> {
        self.stats.records += 1;
        if self.rows.len() >= self.batch_size {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if self.rows.len() == 0 {
            return Ok(());
        }
        self.tx
            .send(self.rows.take())
            .await
            .map_err(|_| Error::Internal("the ingestion pipeline stopped taking records".into()))
    }

    /// GETs `url`, retrying 429, 5xx and network errors up to `max_retries` times.
    async fn fetch(&mut self, url: &Url) -> Result<(HeaderMap, Bytes)> {
        let attempts = self.max_retries.saturating_add(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.limiter.wait().await;
            self.stats.requests += 1;
            match self.attempt(url).await {
                Attempt::Done(headers, body) => return Ok((headers, body)),
                Attempt::Fail(why) => return Err(Error::input(redact(url), why)),
                Attempt::Retry { why, .. } if attempt >= attempts => {
                    return Err(Error::input(
                        redact(url),
                        format!(
                            "{why} (gave up after {attempts} attempt{})",
                            if attempts == 1 { "" } else { "s" }
                        ),
                    ));
                }
                Attempt::Retry { why, wait } => {
                    let wait = wait.unwrap_or_else(|| backoff(attempt));
                    tracing::warn!(url = %redact(url), attempt, "{why}; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn attempt(&mut self, url: &Url) -> Attempt {
        let mut request = self.client.get(url.clone());
        if let Some(auth) = &self.auth {
            request = auth.apply(request);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) if transient(&e) => {
                return Attempt::Retry {
                    why: describe(e),
                    wait: None,
                };
            }
            Err(e) => return Attempt::Fail(describe(e)),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Retry {
                    why: describe(e),
                    wait: None,
                };
            }
        };
        self.stats.bytes += body.len() as u64;
        if status.is_success() {
            return Attempt::Done(headers, body);
        }
        let why = format!("HTTP {status}{}", excerpt(&body));
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Attempt::Retry {
                why,
                wait: retry_after(&headers),
            }
        } else {
            Attempt::Fail(why)
        }
    }
}

/// Follows up to 10 redirects within the first URL's host and port only, so
/// credentials (an API-key header especially) never reach another host.
fn same_host_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let origin = |u: &Url| (u.host_str().map(str::to_owned), u.port_or_known_default());
        let first = attempt.previous().first().map(origin);
        if attempt.previous().len() > 10 {
            attempt.error("too many redirects")
        } else if first.is_some_and(|f| f != origin(attempt.url())) {
            let to = redact(attempt.url());
            attempt.error(format!("redirected to another host ({to}); only redirects within the API's host are followed"))
        } else {
            attempt.follow()
        }
    })
}

/// Network errors worth retrying: connecting, timeouts, dropped connections.
fn transient(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
}

/// A reqwest error and its causes, without the URL (it may hold secrets).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

/// The start of an error response's body, on one line.
fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(4 * MAX)]);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(MAX) {
        _ if text.is_empty() => String::new(),
        Some((i, _)) => format!(": {}…", &text[..i]),
        None => format!(": {text}"),
    }
}

/// The wait a `Retry-After` header asks for (seconds or an HTTP-date), capped.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&Utc) - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Exponential backoff after the `attempt`-th try: 200 ms, 400 ms, … up to
/// 30 s, plus up to 25% jitter.
fn backoff(attempt: u32) -> Duration {
    let base = FIRST_BACKOFF.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let jitter = (RandomState::new().hash_one(attempt) >> 11) as f64 / (1u64 << 53) as f64;
    base.mul_f64(1.0 + jitter / 4.0).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};

    use arrow::array::{Array, AsArray};
    use axum::extract::Query;
    use axum::http::header;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use axum::{Json, Router};
    use serde_json::json;
    use tokio::sync::mpsc;

    use super::*;

    type Params = Query<HashMap<String, String>>;
    type Row = Vec<(String, Option<String>)>;

    /// Serves `app` on a fresh port of 127.0.0.1; returns its base URL.
    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    fn items(ids: impl IntoIterator<Item = u64>) -> Vec<Value> {
        ids.into_iter()
            .map(|i| json!({"id": i, "name": format!("n{i}")}))
            .collect()
    }

    fn num(q: &HashMap<String, String>, name: &str) -> u64 {
        q.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    fn source(url: String, paginate: &str) -> RestSourceConfig {
        RestSourceConfig {
            url,
            paginate: Some(paginate.into()),
            ..Default::default()
        }
    }

    fn strings(range: std::ops::RangeInclusive<u64>) -> Vec<String> {
        range.map(|i| i.to_string()).collect()
    }

    /// What a read sent.
    #[derive(Debug)]
    struct Got {
        rows: Vec<Row>,
        positions: Vec<u64>,
        rejects: Vec<Reject>,
        chunk_sizes: Vec<usize>,
        stats: RestStats,
    }

    impl Got {
        fn ids(&self) -> Vec<String> {
            self.rows
                .iter()
                .filter_map(|r| {
                    r.iter()
                        .find(|(k, _)| k == "id")
                        .and_then(|(_, v)| v.clone())
                })
                .collect()
        }
    }

    /// Reads `src` in chunks of 3 with the environment `env`.
    async fn read_env(
        src: &RestSourceConfig,
        range: CursorRange,
        timestamps: bool,
        env: &[(&str, &str)],
    ) -> Result<Got> {
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let (tx, mut rx) = mpsc::channel(1);
        let collect = tokio::spawn(async move {
            let mut chunks = Vec::new();
            while let Some(c) = rx.recv().await {
                chunks.push(c);
            }
            chunks
        });
        let stats = match Settings::parse(src, &lookup)
            .and_then(|s| Reader::new(s, range, timestamps, 3, tx))
        {
            Ok(reader) => reader.run().await,
            Err(e) => Err(e),
        };
        let chunks = collect.await.unwrap();
        let mut got = Got {
            rows: Vec::new(),
            positions: Vec::new(),
            rejects: Vec::new(),
            chunk_sizes: Vec::new(),
            stats: stats?,
        };
        for c in chunks {
            got.chunk_sizes.push(c.batch.num_rows() + c.rejects.len());
            let schema = c.batch.schema();
            for i in 0..c.batch.num_rows() {
                let row = schema
                    .fields()
                    .iter()
                    .zip(c.batch.columns())
                    .filter(|(_, col)| col.is_valid(i))
                    .map(|(f, col)| {
                        (
                            f.name().clone(),
                            Some(col.as_string::<i32>().value(i).to_string()),
                        )
                    })
                    .collect();
                got.rows.push(row);
            }
            got.positions.extend(c.positions);
            got.rejects.extend(c.rejects);
        }
        Ok(got)
    }

    async fn read_all(src: &RestSourceConfig) -> Result<Got> {
        read_env(src, CursorRange::default(), false, &[]).await
    }

    /// A route that counts its hits and answers with `respond(hit number from 0)`.
    fn counted<R: IntoResponse>(
        hits: &Arc<AtomicUsize>,
        respond: impl Fn(usize) -> R + Clone + Send + Sync + 'static,
    ) -> Router {
        let hits = hits.clone();
        Router::new().route(
            "/x",
            get(move || {
                let n = hits.fetch_add(1, SeqCst);
                let response = respond(n).into_response();
                async move { response }
            }),
        )
    }

    #[tokio::test]
    async fn page_pagination_reads_every_page_once_in_order() {
        let app = Router::new().route(
            "/items",
            get(|Query(q): Params| async move {
                let (page, size) = (num(&q, "page"), num(&q, "per_page"));
                let start = page.saturating_sub(1) * size + 1;
                Json(items((start..start + size).filter(|&i| i <= 7)))
            }),
        );
        let mut src = source(format!("{}/items", serve(app).await), "page");
        src.page_size = Some(3);
        let got = read_all(&src).await.unwrap();
        assert_eq!(got.ids(), strings(1..=7));
        assert_eq!(got.positions, (1..=7).collect::<Vec<_>>());
        assert_eq!(got.stats.stats.requests, 3, "pages of 3, 3 and 1");
        assert_eq!(got.stats.stats.records, 7);
        assert!(got.stats.stats.bytes > 100);
        assert_eq!(got.chunk_sizes, vec![3, 3, 1]);
        assert_eq!(got.stats.cursor_is_timestamp, None);
    }

    #[tokio::test]
    async fn page_pagination_without_page_size_stops_at_an_empty_page() {
        let app = Router::new().route(
            "/items",
            get(|Query(q): Params| async move {
                let start = num(&q, "p").saturating_sub(1) * 2 + 1;
                assert!(!q.contains_key("per_page"));
                Json(items((start..start + 2).filter(|&i| i <= 5)))
            }),
        );
        let src = source(format!("{}/items?p=9&q=x", serve(app).await), "page:p");
        let got = read_all(&src).await.unwrap();
        assert_eq!(got.ids(), strings(1..=5));
        assert_eq!(got.stats.stats.requests, 4, "2, 2, 1, then an empty page");
    }

    #[tokio::test]
    async fn offset_pagination_reads_every_page_once_in_order() {
        let app = Router::new().route(
            "/items",
            get(|Query(q): Params| async move {
                let (skip, take) = (num(&q, "skip"), num(&q, "take"));
                Json(json!({"results": items((skip + 1..=skip + take).filter(|&i| i <= 5))}))
            }),
        );
        let mut src = source(format!("{}/items", serve(app).await), "offset:skip:take");
        src.page_size = Some(2);
        src.records_path = Some("results".into());
        let got = read_all(&src).await.unwrap();
        assert_eq!(got.ids(), strings(1..=5));
        assert_eq!(got.stats.stats.requests, 3, "offsets 0, 2 and 4");
    }

    #[tokio::test]
    async fn cursor_pagination_follows_the_next_cursor_in_the_body() {
        let app = Router::new().route(
            "/feed",
            get(|Query(q): Params| async move {
                let (ids, next) = match q.get("after").map(String::as_str) {
                    None => (1..=3, json!("b")),
                    Some("b") => (4..=6, json!(7)),
                    Some("7") => (7..=7, json!(null)),
                    Some(other) => panic!("unexpected cursor {other}"),
                };
                Json(json!({"data": {"items": items(ids)}, "meta": {"next": next}}))
            }),
        );
        let mut src = source(
            format!("{}/feed", serve(app).await),
            "cursor:meta.next:after",
        );
        src.records_path = Some("data.items".into());
        let got = read_all(&src).await.unwrap();
        assert_eq!(got.ids(), strings(1..=7));
        assert_eq!(got.positions, (1..=7).collect::<Vec<_>>());
        assert_eq!(got.stats.stats.requests, 3);
    }

    #[tokio::test]
    async fn link_pagination_follows_rel_next() {
        let app = Router::new().route(
            "/items",
            get(|Query(q): Params| async move {
                let p = num(&q, "p").max(1);
                let mut headers = axum::http::HeaderMap::new();
                if p < 3 {
                    let link = format!(
                        "</items?p=3>; rel=\"last\", </items?p={}>; rel=\"next\"",
                        p + 1
                    );
                    headers.insert(header::LINK, link.parse().unwrap());
                }
                (headers, Json(items([2 * p - 1, 2 * p])))
            }),
        );
        let src = source(format!("{}/items", serve(app).await), "link");
        let got = read_all(&src).await.unwrap();
        assert_eq!(got.ids(), strings(1..=6));
        assert_eq!(got.stats.stats.requests, 3);
    }

    #[tokio::test]
    async fn a_429_waits_for_retry_after() {
        let hits = Arc::new(AtomicUsize::new(0));
        let app = counted(&hits, |n| match n {
            0 => (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "1")],
                "slow down",
            )
                .into_response(),
            _ => Json(items(1..=2)).into_response(),
        });
        let src = source(format!("{}/x", serve(app).await), "none");
        let start = std::time::Instant::now();
        let got = read_all(&src).await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(950),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(got.ids(), strings(1..=2));
        assert_eq!(hits.load(SeqCst), 2);
        assert_eq!(got.stats.stats.requests, 2);
    }

    #[tokio::test]
    async fn a_503_is_retried_with_backoff() {
        let hits = Arc::new(AtomicUsize::new(0));
        let app = counted(&hits, |n| match n {
            0 | 1 => (StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
            _ => Json(items(1..=1)).into_response(),
        });
        let src = source(format!("{}/x", serve(app).await), "none");
        let start = std::time::Instant::now();
        let got = read_all(&src).await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(600),
            "200 ms then 400 ms"
        );
        assert_eq!(got.ids(), strings(1..=1));
        assert_eq!(got.stats.stats.requests, 3);
    }

    #[tokio::test]
    async fn a_404_fails_at_once() {
        let hits = Arc::new(AtomicUsize::new(0));
        let app = counted(&hits, |_| (StatusCode::NOT_FOUND, "no such\n collection"));
        let src = source(format!("{}/x?api_key=s3cret", serve(app).await), "none");
        let err = read_all(&src).await.unwrap_err().to_string();
        assert!(
            err.contains("HTTP 404 Not Found: no such collection"),
            "{err}"
        );
        assert!(err.contains("/x?api_key=***"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        assert_eq!(hits.load(SeqCst), 1);
    }

    #[tokio::test]
    async fn retries_run_out() {
        let hits = Arc::new(AtomicUsize::new(0));
        let app = counted(&hits, |_| (StatusCode::INTERNAL_SERVER_ERROR, "boom"));
        let mut src = source(format!("{}/x", serve(app).await), "none");
        src.max_retries = Some(2);
        let err = read_all(&src).await.unwrap_err().to_string();
        assert!(
            err.contains("/x: HTTP 500 Internal Server Error: boom"),
            "{err}"
        );
        assert!(err.contains("gave up after 3 attempts"), "{err}");
        assert_eq!(hits.load(SeqCst), 3);
    }

    #[tokio::test]
    async fn connection_errors_are_retried_and_reported() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        drop(listener);
        let mut src = source(url, "none");
        src.max_retries = Some(1);
        let err = read_all(&src).await.unwrap_err().to_string();
        assert!(err.contains("gave up after 2 attempts"), "{err}");
    }

    #[tokio::test]
    async fn redirects_are_followed_within_the_host_only() {
        let app = Router::new()
            .route(
                "/old",
                get(|| async { axum::response::Redirect::temporary("/new") }),
            )
            .route("/new", get(|| async { Json(items(1..=1)) }))
            .route(
                "/away",
                get(|headers: axum::http::HeaderMap| async move {
                    let host = headers[header::HOST]
                        .to_str()
                        .unwrap()
                        .replace("127.0.0.1", "localhost");
                    axum::response::Redirect::temporary(&format!("http://{host}/new?token=t0p"))
                }),
            );
        let base = serve(app).await;
        let got = read_all(&source(format!("{base}/old"), "none"))
            .await
            .unwrap();
        assert_eq!(got.ids(), ["1"]);
        let err = read_all(&source(format!("{base}/away"), "none"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("redirected to another host (http://localhost:"),
            "{err}"
        );
        assert!(err.contains("token=***") && !err.contains("t0p"), "{err}");
    }

    #[tokio::test]
    async fn auth_sends_credentials_from_the_environment() {
        let app = Router::new().route(
            "/x",
            get(|headers: axum::http::HeaderMap| async move {
                let auth = headers.get(header::AUTHORIZATION);
                let ok = auth.is_some_and(|v| v == "Bearer s3cret" || v == "Basic YWxpY2U6cHc=")
                    || headers.get("x-api-key").is_some_and(|v| v == "k3y");
                match ok {
                    true => Json(items(1..=1)).into_response(),
                    false => (StatusCode::UNAUTHORIZED, "who are you?").into_response(),
                }
            }),
        );
        let url = format!("{}/x", serve(app).await);
        let with = |auth: &str| RestSourceConfig {
            auth: Some(auth.into()),
            ..source(url.clone(), "none")
        };
        let env = [
            ("T_TOKEN", "s3cret"),
            ("T_WRONG", "n0pe"),
            ("T_USER", "alice"),
            ("T_PASS", "pw"),
            ("T_KEY", "k3y"),
        ];
        let read = |src: RestSourceConfig| async move {
            read_env(&src, CursorRange::default(), false, &env).await
        };
        let err = read(source(url.clone(), "none"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("HTTP 401"), "{err}");
        for ok in [
            "bearer:env:T_TOKEN",
            "basic:env:T_USER:env:T_PASS",
            "basic:alice:env:T_PASS",
            "header:X-Api-Key:env:T_KEY",
        ] {
            assert_eq!(read(with(ok)).await.unwrap().ids(), ["1"], "{ok}");
        }
        let err = read(with("bearer:env:T_WRONG"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("HTTP 401 Unauthorized: who are you?"), "{err}");
        assert!(!err.contains("n0pe"), "{err}");
        let err = read(with("header:X-Api-Key:env:T_MISSING"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Invalid(m) if m.contains("T_MISSING")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn timestamp_cursors_filter_records_and_are_sent_back() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        let app = Router::new().route(
            "/events",
            get(move |Query(q): Params| async move {
                log.lock().unwrap().push(q.get("since").cloned());
                Json(json!([
                    {"id": 1, "updated_at": "2024-01-01T00:00:00Z"},
                    {"id": 2, "updated_at": "2024-01-01T03:00:00+02:00"},
                    {"id": 3, "updated_at": "2024-01-02 00:00:00"},
                    {"id": 4, "updated_at": "2023-12-31T23:59:59.999999Z"},
                    {"id": 5},
                    {"id": 6, "updated_at": 17},
                    {"id": 7, "updated_at": "2024-01-03"},
                ]))
            }),
        );
        let src = RestSourceConfig {
            cursor_field: Some("updated_at".into()),
            cursor_param: Some("since".into()),
            ..source(format!("{}/events", serve(app).await), "none")
        };
        let at = |s| timestamp_micros(s).unwrap();
        let range = CursorRange {
            after: Some(at("2024-01-01T00:00:00Z")),
            up_to: None,
        };
        let got = read_env(&src, range, true, &[]).await.unwrap();
        assert_eq!(
            *sent.lock().unwrap(),
            [Some("2024-01-01T00:00:00Z".to_string())]
        );
        assert_eq!(got.ids(), ["2", "3", "7"]);
        assert_eq!(got.positions, [2, 3, 7]);
        let rejects: Vec<_> = got
            .rejects
            .iter()
            .map(|r| (r.position, r.field.as_deref()))
            .collect();
        assert_eq!(rejects, [(5, Some("updated_at")), (6, Some("updated_at"))]);
        assert!(
            got.rejects[0].reason.contains("missing"),
            "{:?}",
            got.rejects[0]
        );
        assert!(
            got.rejects[1]
                .reason
                .contains("is an integer, but the cursor values are timestamps")
        );
        assert_eq!(got.rejects[1].payload, r#"{"id":6,"updated_at":17}"#);
        assert_eq!(got.stats.stats.records, 5, "3 rows and 2 rejects");
        assert_eq!(got.stats.stats.max_cursor, Some(at("2024-01-03T00:00:00Z")));
        assert_eq!(got.stats.cursor_is_timestamp, Some(true));
    }

    #[tokio::test]
    async fn integer_cursors_filter_a_range() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        let app = Router::new().route(
            "/rows",
            get(move |Query(q): Params| async move {
                log.lock().unwrap().push(q.get("from").cloned());
                let rows: Vec<Value> = (1..=10)
                    .map(|i| match i % 2 {
                        0 => json!({"id": i, "seq": i}),
                        _ => json!({"id": i, "seq": i.to_string()}),
                    })
                    .collect();
                Json(rows)
            }),
        );
        let src = RestSourceConfig {
            cursor_field: Some("seq".into()),
            cursor_param: Some("from".into()),
            ..source(format!("{}/rows", serve(app).await), "none")
        };
        let range = CursorRange {
            after: Some(3),
            up_to: Some(7),
        };
        let got = read_env(&src, range, false, &[]).await.unwrap();
        assert_eq!(*sent.lock().unwrap(), [Some("3".to_string())]);
        assert_eq!(got.ids(), strings(4..=7));
        assert_eq!(got.stats.stats.max_cursor, Some(7));
        assert_eq!(got.stats.cursor_is_timestamp, Some(false));
        assert_eq!(got.stats.stats.records, 4);
    }

    #[tokio::test]
    async fn records_that_are_not_objects_are_rejected() {
        let app = Router::new().route(
            "/x",
            // Raw text: `json!` would sort the keys.
            get(|| async { r#"[{"b": 1, "a": {"n": [2]}}, 5, "x", null, {"a": "3"}]"# }),
        );
        let src = source(format!("{}/x", serve(app).await), "none");
        let got = read_all(&src).await.unwrap();
        let kv = |k: &str, v: &str| (k.to_string(), Some(v.to_string()));
        assert_eq!(
            got.rows[0],
            [kv("b", "1"), kv("a", r#"{"n":[2]}"#)],
            "keys keep their order"
        );
        assert_eq!(got.rows[1], [kv("a", "3")]);
        assert_eq!(got.positions, [1, 5]);
        let rejects: Vec<_> = got
            .rejects
            .iter()
            .map(|r| (r.position, r.payload.as_str()))
            .collect();
        assert_eq!(rejects, [(2, "5"), (3, "\"x\""), (4, "null")]);
        assert_eq!(got.rejects[0].reason, "record is not a JSON object");
        assert_eq!(got.stats.stats.records, 5);
    }

    #[tokio::test]
    async fn rate_limit_spaces_requests() {
        let app = Router::new().route(
            "/x",
            get(|Query(q): Params| async move {
                Json(items((1..=4).filter(|&i| i == num(&q, "page"))))
            }),
        );
        let src = RestSourceConfig {
            page_size: Some(1),
            rate_limit: Some(10.0),
            ..source(format!("{}/x", serve(app).await), "page")
        };
        let start = std::time::Instant::now();
        let got = read_all(&src).await.unwrap();
        assert_eq!(got.stats.stats.requests, 5, "4 pages and an empty one");
        assert!(
            start.elapsed() >= Duration::from_millis(400),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn pagination_loops_are_errors() {
        let app = Router::new()
            .route(
                "/same-cursor",
                get(|| async { Json(json!({"items": items(1..=1), "next": "c"})) }),
            )
            .route("/ignores-page", get(|| async { Json(items(1..=2)) }));
        let base = serve(app).await;
        let src = RestSourceConfig {
            records_path: Some("items".into()),
            ..source(format!("{base}/same-cursor"), "cursor:next")
        };
        let err = read_all(&src).await.unwrap_err().to_string();
        assert!(
            err.contains("pagination loop") && err.contains("next=c"),
            "{err}"
        );
        let err = read_all(&source(format!("{base}/ignores-page"), "page"))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("same as the previous one"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn responses_without_records_are_errors() {
        let app = Router::new()
            .route(
                "/object",
                get(|| async { Json(json!({"data": {"rows": []}})) }),
            )
            .route("/text", get(|| async { "<html>" }));
        let base = serve(app).await;
        let err = read_all(&source(format!("{base}/object"), "none"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("set records_path"), "{err}");
        let src = RestSourceConfig {
            records_path: Some("data.items".into()),
            ..source(format!("{base}/object"), "none")
        };
        let err = read_all(&src).await.unwrap_err();
        assert!(err.to_string().contains("has no `data.items`"), "{err}");
        let err = read_all(&source(format!("{base}/text"), "none"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
    }

    #[tokio::test]
    async fn a_closed_receiver_is_an_internal_error() {
        let app = Router::new().route("/x", get(|| async { Json(items(1..=5)) }));
        let src = source(format!("{}/x", serve(app).await), "none");
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let err = read(&src, CursorRange::default(), false, 2, tx)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Internal(_)), "{err}");
    }

    #[test]
    fn check_explains_the_accepted_syntax() {
        let err = |src: RestSourceConfig| check(&src).unwrap_err().to_string();
        let base = || source("https://api.example.com/v1/items".into(), "none");
        assert!(check(&base()).is_ok());
        for bad in [
            "pages",
            "page:",
            "offset:a:b:c",
            "cursor",
            "cursor:a..b",
            "link:x",
        ] {
            let e = err(source("https://a.example/x".into(), bad));
            assert!(e.contains(PAGINATE_SYNTAX), "{bad}: {e}");
        }
        let e = err(RestSourceConfig {
            auth: Some("bearer:abc123".into()),
            ..base()
        });
        assert!(e.contains("bearer:env:VAR") && !e.contains("abc123"), "{e}");
        let e = err(RestSourceConfig {
            auth: Some("bearer:env:TARN_TEST_SURELY_UNSET_51093".into()),
            ..base()
        });
        assert!(
            e.contains("environment variable TARN_TEST_SURELY_UNSET_51093 is not set"),
            "{e}"
        );
        let e = err(RestSourceConfig {
            rate_limit: Some(0.0),
            ..base()
        });
        assert!(e.contains("rate_limit"), "{e}");
        let e = err(RestSourceConfig {
            cursor_param: Some("since".into()),
            ..base()
        });
        assert!(e.contains("cursor_param needs cursor_field"), "{e}");
        assert!(err(source("ftp://a.example/x".into(), "none")).contains("http://"));
        assert!(err(source("not a url".into(), "none")).contains("http://"));
        let e = err(RestSourceConfig {
            headers: [("bad name".into(), "v".into())].into(),
            ..base()
        });
        assert!(e.contains("`bad name` is not a valid header name"), "{e}");
    }

    #[test]
    fn paginate_defaults() {
        let parse = |s: &str, size| Paging::parse(s, size).unwrap();
        assert_eq!(
            parse("page", Some(50)),
            Paging::Page {
                param: "page".into(),
                size: Some(50),
                number: 1
            }
        );
        assert_eq!(
            parse("offset", None),
            Paging::Offset {
                param: "offset".into(),
                limit_param: "limit".into(),
                limit: 100,
                offset: 0
            }
        );
        assert_eq!(
            parse("cursor:meta.next_token", None),
            Paging::Cursor {
                field: vec!["meta".into(), "next_token".into()],
                param: "token".into(),
                next: None
            }
        );
        assert_eq!(cursor_param("next_cursor"), "cursor");
        assert_eq!(cursor_param("nextPageToken"), "pageToken");
        assert_eq!(cursor_param("cursor"), "cursor");
        assert_eq!(cursor_param("next"), "next");
        assert_eq!(parse("none", None), Paging::None);
        assert_eq!(parse("link", None), Paging::Link { next: None });
    }

    #[test]
    fn labels_hide_credentials_and_query_secrets() {
        let label_of = |url: &str| label(&source(url.into(), "none"));
        assert_eq!(
            label_of("https://u:pw@api.example.com/v1/items?api_key=abc&q=1&X-Amz-Signature=zz#f"),
            "https://api.example.com/v1/items?api_key=***&q=1&X-Amz-Signature=***"
        );
        assert_eq!(
            label_of("https://api.example.com/v1?page=2"),
            "https://api.example.com/v1?page=2"
        );
        assert_eq!(label_of("::"), "rest source (invalid URL)");
    }

    #[test]
    fn link_headers_are_parsed() {
        let next = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(LINK, v.parse().unwrap());
            }
            next_link(&headers)
        };
        assert_eq!(
            next(&[
                r#"<https://a/x?p=1>; rel="prev", <https://a/x?p=3>; title="a, b"; rel="next""#
            ]),
            Some("https://a/x?p=3".into())
        );
        assert_eq!(
            next(&["<https://a/x?p=1>; rel=first", "</x?p=2>; rel=next"]),
            Some("/x?p=2".into())
        );
        assert_eq!(
            next(&[r#"</x?p=2>; rel="next last""#]),
            Some("/x?p=2".into())
        );
        assert_eq!(next(&[r#"</x?p=9>; rel="last""#]), None);
        assert_eq!(next(&[]), None);
    }

    #[test]
    fn cursor_values_are_integers_or_timestamps() {
        let midnight = 1_704_067_200_000_000;
        for s in [
            "2024-01-01T00:00:00Z",
            "2024-01-01T02:00:00+02:00",
            "2024-01-01T02:00:00+0200",
            "2024-01-01 00:00:00Z",
            "2024-01-01 00:00:00",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00",
            "2024-01-01",
        ] {
            assert_eq!(timestamp_micros(s), Some(midnight), "{s}");
        }
        assert_eq!(
            timestamp_micros("2024-01-01T00:00:00.5Z"),
            Some(midnight + 500_000)
        );
        assert_eq!(
            timestamp_micros("2024-01-01T00:00:00.000001"),
            Some(midnight + 1)
        );
        assert_eq!(timestamp_micros("yesterday"), None);
        assert_eq!(cursor_value(&json!(5)), Some((5, false)));
        assert_eq!(cursor_value(&json!(" 5 ")), Some((5, false)));
        assert_eq!(cursor_value(&json!("2024-01-01")), Some((midnight, true)));
        assert_eq!(cursor_value(&json!(1.5)), None);
        assert_eq!(cursor_value(&json!(true)), None);
        assert_eq!(render_cursor(midnight, true), "2024-01-01T00:00:00Z");
        assert_eq!(
            render_cursor(midnight + 1, true),
            "2024-01-01T00:00:00.000001Z"
        );
        assert_eq!(render_cursor(midnight, false), midnight.to_string());
    }

    #[test]
    fn retry_waits() {
        let after = |v: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, v.parse().unwrap());
            retry_after(&headers)
        };
        assert_eq!(after("3"), Some(Duration::from_secs(3)));
        assert_eq!(after("3600"), Some(MAX_RETRY_AFTER));
        assert_eq!(after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        let soon = (Utc::now() + chrono::Duration::seconds(10)).to_rfc2822();
        assert!(
            after(&soon)
                .is_some_and(|d| d > Duration::from_secs(8) && d <= Duration::from_secs(10))
        );
        assert_eq!(after("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
        let first = backoff(1);
        assert!(
            first >= FIRST_BACKOFF && first <= FIRST_BACKOFF * 5 / 4,
            "{first:?}"
        );
        assert!(backoff(3) >= FIRST_BACKOFF * 4);
        assert_eq!(backoff(40), MAX_BACKOFF);
    }

    #[test]
    fn query_secrets_are_recognised() {
        for name in [
            "api_key",
            "apiKey",
            "access_token",
            "client_secret",
            "X-Amz-Credential",
            "sig",
            "password",
        ] {
            assert!(is_secret(name), "{name}");
        }
        for name in ["page", "q", "limit", "author", "design", "since"] {
            assert!(!is_secret(name), "{name}");
        }
    }
}
