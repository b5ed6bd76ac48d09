//! Zones and where their tables live.
//!
//! A zone root is a URL (`file:///…` for local paths, `s3://bucket/prefix`, …). A
//! table lives at `<zone root>/<dataset>`, quarantined records at
//! `<raw root>/_quarantine/<dataset>`. All access goes through `object_store`,
//! chosen by the URL's scheme.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};

/// The four zones a dataset moves through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Zone {
    /// As ingested, plus `_ingest_*` columns; append-only.
    Raw,
    /// Typed, deduplicated, standardized, masked.
    Cleansed,
    /// Quality-checked, enriched, partitioned.
    Curated,
    /// SQL-defined marts.
    Consumption,
}

impl Zone {
    /// All zones, in promotion order.
    pub const ALL: [Zone; 4] = [Zone::Raw, Zone::Cleansed, Zone::Curated, Zone::Consumption];

    /// The zone's name as used in paths and the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            Zone::Raw => "raw",
            Zone::Cleansed => "cleansed",
            Zone::Curated => "curated",
            Zone::Consumption => "consumption",
        }
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Zone {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Zone::ALL
            .into_iter()
            .find(|z| z.as_str() == s)
            .ok_or_else(|| {
                Error::Storage(format!(
                    "unknown zone `{s}` (expected raw, cleansed, curated or consumption)"
                ))
            })
    }
}

/// Zone roots as URLs, plus the object-store options that apply to all of them.
#[derive(Debug, Clone)]
pub struct ZoneRoots {
    /// Raw zone root.
    pub raw: Url,
    /// Cleansed zone root.
    pub cleansed: Url,
    /// Curated zone root.
    pub curated: Url,
    /// Consumption zone root.
    pub consumption: Url,
    /// Object-store options (endpoint, credentials, ...).
    pub options: HashMap<String, String>,
}

impl ZoneRoots {
    /// The root URL of `zone`.
    pub fn root(&self, zone: Zone) -> &Url {
        match zone {
            Zone::Raw => &self.raw,
            Zone::Cleansed => &self.cleansed,
            Zone::Curated => &self.curated,
            Zone::Consumption => &self.consumption,
        }
    }

    /// Where the Delta table of `dataset` lives in `zone`.
    pub fn table_url(&self, zone: Zone, dataset: &str) -> Url {
        join_url(self.root(zone), dataset)
    }

    /// Where quarantined records of `dataset` live: `<raw root>/_quarantine/<dataset>`.
    pub fn quarantine_url(&self, dataset: &str) -> Url {
        join_url(&join_url(&self.raw, "_quarantine"), dataset)
    }
}

/// An object store for `url` (chosen by its scheme) and the object path of `url` in it.
pub fn object_store_for(
    url: &Url,
    options: &HashMap<String, String>,
) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
    // object_store matches option keys in lower case; accept AWS_* spellings too.
    let options = options
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()));
    let (store, path) = object_store::parse_url_opts(url, options)
        .map_err(|e| Error::Storage(format!("cannot open {url}: {e}")))?;
    Ok((Arc::from(store), path))
}

/// Appends one path segment to a directory URL.
pub fn join_url(base: &Url, segment: &str) -> Url {
    let mut u = base.clone();
    let path = format!("{}/{}", u.path().trim_end_matches('/'), segment);
    u.set_path(&path);
    u
}

/// Turns a location from the config (a URL or a path relative to `base_dir`) into a URL.
pub fn resolve_location(location: &str, base_dir: &Path) -> Result<Url> {
    if location.contains("://") {
        let url = Url::parse(location)
            .map_err(|e| Error::Storage(format!("invalid location `{location}`: {e}")))?;
        return Ok(trim_trailing_slash(url));
    }
    let p = Path::new(location);
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    };
    let abs = normalize(&abs);
    let url = Url::from_directory_path(&abs)
        .map_err(|_| Error::Storage(format!("invalid local path `{}`", abs.display())))?;
    Ok(trim_trailing_slash(url))
}

fn trim_trailing_slash(mut url: Url) -> Url {
    let p = url.path().trim_end_matches('/').to_string();
    if !p.is_empty() {
        url.set_path(&p);
    }
    url
}

/// Removes `.` and `..` components without touching the filesystem.
fn normalize(p: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The local filesystem path of a `file://` URL, if it is one.
pub fn local_path(url: &Url) -> Option<std::path::PathBuf> {
    (url.scheme() == "file")
        .then(|| url.to_file_path().ok())
        .flatten()
}
