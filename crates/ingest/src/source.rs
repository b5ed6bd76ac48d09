//! FileSystemConnector: turns paths, directories and globs into input files on
//! an object store, and fingerprints them.

use std::collections::HashMap;
use std::sync::Arc;

use futures::TryStreamExt;
use globset::GlobBuilder;
use object_store::path::Path as ObjectPath;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt};
use tarn_common::storage::{local_path, object_store_for};
use tokio_util::io::{StreamReader, SyncIoBridge};
use url::Url;

use crate::error::{Error, Result};

/// One input file.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// The file's URL.
    pub url: Url,
    /// The store it is read from.
    pub store: Arc<dyn ObjectStore>,
    /// Its path in the store.
    pub path: ObjectPath,
    /// Size in bytes.
    pub size: u64,
}

impl InputFile {
    /// How the file is named to people: a local path, or the URL.
    pub fn display(&self) -> String {
        local_path(&self.url)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| self.url.to_string())
    }

    /// The file's content hash (BLAKE3, hex), read through the object store.
    pub async fn content_hash(&self) -> Result<String> {
        let display = self.display();
        let got = self
            .store
            .get(&self.path)
            .await
            .map_err(|e| Error::input(&display, e))?;
        let mut hasher = blake3::Hasher::new();
        match got.payload {
            GetResultPayload::File(file, _) => {
                hasher = tokio::task::spawn_blocking(move || {
                    hasher.update_reader(file)?;
                    Ok::<_, std::io::Error>(hasher)
                })
                .await
                .map_err(|e| Error::Internal(format!("hash thread: {e}")))?
                .map_err(|e| Error::input(&display, e))?;
            }
            GetResultPayload::Stream(mut stream) => {
                while let Some(bytes) = stream
                    .try_next()
                    .await
                    .map_err(|e| Error::input(&display, e))?
                {
                    hasher.update(&bytes);
                }
            }
        }
        Ok(hasher.finalize().to_hex().to_string())
    }

    /// A blocking reader of the whole file, for use on a blocking thread. Local
    /// files are read directly from the handle object_store opens; remote ones
    /// are streamed through the runtime.
    pub fn blocking_reader(
        &self,
        handle: &tokio::runtime::Handle,
    ) -> Result<Box<dyn std::io::Read + Send>> {
        let got = handle
            .block_on(self.store.get(&self.path))
            .map_err(|e| Error::input(self.display(), e))?;
        Ok(match got.payload {
            GetResultPayload::File(file, _) => Box::new(file),
            GetResultPayload::Stream(stream) => Box::new(SyncIoBridge::new_with_handle(
                StreamReader::new(stream.map_err(std::io::Error::other)),
                handle.clone(),
            )),
        })
    }
}

/// Resolves each entry of `paths` (a file, a directory or a glob; a local path or
/// a URL) into files. An entry that matches nothing is an error naming it.
pub async fn resolve_inputs(
    paths: &[String],
    options: &HashMap<String, String>,
) -> Result<Vec<InputFile>> {
    let mut files = Vec::new();
    for p in paths {
        let before = files.len();
        let url = to_url(p)?;
        let (store, path) = object_store_for(&url, options)?;
        let raw_path = path.as_ref();
        if let Some(glob_at) = raw_path.find(['*', '?', '[', '{']) {
            let prefix = raw_path[..glob_at]
                .rfind('/')
                .map_or("", |i| &raw_path[..i]);
            let matcher = GlobBuilder::new(raw_path)
                .literal_separator(true)
                .build()
                .map_err(|e| Error::Invalid(format!("invalid glob `{p}`: {e}")))?
                .compile_matcher();
            let prefix = ObjectPath::from(prefix);
            let mut listed = list(&store, &prefix, p).await?;
            listed.retain(|(path, _)| matcher.is_match(path.as_ref()));
            push_files(&mut files, &url, &store, listed);
            if files.len() == before {
                return Err(Error::input(p, "no files match this pattern"));
            }
            continue;
        }
        match store.head(&path).await {
            Ok(meta) => files.push(InputFile {
                url: url.clone(),
                store: store.clone(),
                path: meta.location,
                size: meta.size,
            }),
            Err(object_store::Error::NotFound { .. }) => {
                let listed = list(&store, &path, p).await?;
                if listed.is_empty() {
                    return Err(Error::input(p, "no such file or directory"));
                }
                push_files(&mut files, &url, &store, listed);
            }
            Err(e) => return Err(Error::input(p, e)),
        }
    }
    Ok(files)
}

async fn list(
    store: &Arc<dyn ObjectStore>,
    prefix: &ObjectPath,
    shown: &str,
) -> Result<Vec<(ObjectPath, u64)>> {
    let mut out: Vec<(ObjectPath, u64)> = store
        .list(Some(prefix))
        .map_ok(|m| (m.location, m.size))
        .try_collect()
        .await
        .map_err(|e| Error::input(shown, e))?;
    // Hidden and underscore files (e.g. `_SUCCESS`, `.crc`) are not data.
    out.retain(|(p, _)| {
        p.filename()
            .is_some_and(|f| !f.starts_with('.') && !f.starts_with('_'))
    });
    out.sort();
    Ok(out)
}

fn push_files(
    files: &mut Vec<InputFile>,
    base: &Url,
    store: &Arc<dyn ObjectStore>,
    listed: Vec<(ObjectPath, u64)>,
) {
    for (path, size) in listed {
        let mut url = base.clone();
        url.set_path(&format!("/{path}"));
        files.push(InputFile {
            url,
            store: store.clone(),
            path,
            size,
        });
    }
}

fn to_url(p: &str) -> Result<Url> {
    if p.contains("://") {
        return Url::parse(p).map_err(|e| Error::Invalid(format!("invalid URL `{p}`: {e}")));
    }
    let abs = std::path::absolute(p).map_err(|e| Error::input(p, e))?;
    Url::from_file_path(&abs).map_err(|_| Error::Invalid(format!("invalid path `{p}`")))
}
