//! `tarn demo`: a lake in a directory, a bundled sample with good and bad
//! records, one ingest, and what landed where.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::{DataLake, DataSpec, IngestionResult};

/// The bundled sample schema.
pub const SAMPLE_AVSC: &str = include_str!("../sample/user_events.avsc");
/// The bundled sample: 18 records, 5 of them invalid (a bad timestamp, a
/// missing required field, an unknown enum symbol, an unbalanced quote and an
/// extra field).
pub const SAMPLE_CSV: &str = include_str!("../sample/user_events.csv");

/// What the demo did.
#[derive(Debug)]
pub struct DemoOutcome {
    /// The lake.
    pub lake: DataLake,
    /// The lake's directory.
    pub dir: PathBuf,
    /// The ingest's result.
    pub result: IngestionResult,
}

/// Creates (or reuses) a lake in `dir`, writes the sample under `dir/incoming`
/// and ingests it into `user_events`, partitioned by the event date. A second
/// run finds the file already ingested and writes nothing.
pub async fn run(dir: &Path) -> Result<DemoOutcome> {
    let (lake, _) = DataLake::init(dir).await?;
    let incoming = dir.join("incoming");
    std::fs::create_dir_all(&incoming).map_err(|source| Error::Io {
        path: incoming.display().to_string(),
        source,
    })?;
    let write = |name: &str, text: &str| {
        let p = incoming.join(name);
        std::fs::write(&p, text).map_err(|source| Error::Io {
            path: p.display().to_string(),
            source,
        })?;
        Ok::<_, Error>(p)
    };
    let avsc = write("user_events.avsc", SAMPLE_AVSC)?;
    let csv = write("user_events.csv", SAMPLE_CSV)?;
    let spec = DataSpec::new("user_events", csv.display().to_string())
        .with_schema(avsc.display().to_string())
        .with_partition_key("timestamp");
    let result = lake.ingest_data("file", spec).await?;
    Ok(DemoOutcome {
        lake,
        dir: dir.to_path_buf(),
        result,
    })
}
